"""HiViT, iTPN and Fast-iTPN, registered with timm (``timm.create_model(name)`` after ``import itpn.models``)."""
from itpn.records import LAYOUT_FIELDS, TokenLayout

from . import fast_itpn, hivit, itpn  # noqa: F401  (registers the models with timm)
from .acceleration import (
    VARIANTS,
    AccelerationConfig,
    Stage3Accelerator,
    get_acceleration,
    get_variant,
    set_acceleration,
)
from .checkpoint import CheckpointMismatchError, LoadReport, load_checkpoint, read_state_dict, save_safetensors
from .hivit import BackboneOutput, HiViT
from .layout import effective_layout, inactive_reason, resolve_variant, stage3_depth
from .pyramid import FeaturePyramid

MODEL_NAMES = (
    "hivit_tiny_patch16_224",
    "hivit_small_patch16_224",
    "hivit_base_patch16_224",
    "itpn_base_patch16_224",
    "itpn_large_patch16_224",
    "fast_itpn_tiny_patch16_224",
    "fast_itpn_small_patch16_224",
    "fast_itpn_base_patch16_224",
    "fast_itpn_large_patch16_224",
)


def create_model(name: str, **kwargs):
    """``timm.create_model`` restricted to this project's models, with an error that lists them."""
    import timm

    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; the models are: {', '.join(MODEL_NAMES)}")
    return timm.create_model(name, **kwargs)


__all__ = [
    "AccelerationConfig", "BackboneOutput", "CheckpointMismatchError", "FeaturePyramid", "HiViT", "LAYOUT_FIELDS",
    "LoadReport", "MODEL_NAMES", "Stage3Accelerator", "TokenLayout", "VARIANTS", "create_model", "effective_layout",
    "get_acceleration", "get_variant", "inactive_reason", "load_checkpoint", "read_state_dict", "resolve_variant",
    "save_safetensors", "set_acceleration", "stage3_depth",
]
