"""Fast-iTPN models, pre-training, fine-tuning, data and benchmarks.

``import itpn`` loads no subpackage: ``import itpn.models`` registers the models with timm, and
``itpn.records`` (the result rows the results store and the dashboard share) loads without torch.
"""

__version__ = "0.1.0"
