"""Fast-iTPN models, pre-training, fine-tuning, data and benchmarks.

``import itpn`` registers the models with timm (``timm.create_model("fast_itpn_base_patch16_224")``), as
``import timm`` registers timm's own; the result rows the store and the dashboard share are ``itpn.records``.
"""
from . import models  # noqa: F401  (registers the models with timm)

__version__ = "0.1.0"
