"""Fast-iTPN models, pre-training, fine-tuning, data and benchmarks.

``import itpn.models`` registers the models with timm (``timm.create_model("fast_itpn_base_patch16_224")``),
as ``import timm`` registers timm's own. ``import itpn`` alone imports nothing heavy: the orchestrator, the
store and the dashboard read ``itpn.records`` without paying for torch, timm and torchvision (about 5 s per
process on two cores, paid by every Prefect flow-run process and every ``itpn`` command).
"""

__version__ = "0.1.0"
