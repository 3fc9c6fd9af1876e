"""Fast-iTPN (Tian et al., TPAMI 2024): iTPN with a ConvMLP stem and conv merges, and SwiGLU
(sub-LN) blocks with LayerScale in stage 3; MLP ratio 3, no relative position bias.

The acceleration of the paper (token migration, token gathering) is switched on per model
with ``itpn.models.acceleration``; these factories build the plain network the released
checkpoints hold.
"""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model

from ._registry import create_backbone, default_cfg
from .hivit import HiViT

default_cfgs = generate_default_cfgs({
    name: default_cfg(name)
    for name in ("fast_itpn_tiny_patch16_224", "fast_itpn_small_patch16_224", "fast_itpn_base_patch16_224",
                 "fast_itpn_large_patch16_224")
})

_FAST_ITPN = dict(stem_mlp_ratio=3.0, mlp_ratio=3.0, qkv_bias="qv", patch_norm=False, conv_stem=True, swiglu=True,
                  sub_ln=True, init_values=0.1, rpe=False, final_norm="pre_pool")


@register_model
def fast_itpn_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=384, depths=(1, 1, 12), num_heads=6, **_FAST_ITPN)
    return create_backbone(HiViT, "fast_itpn_tiny_patch16_224", pretrained, model_args, kwargs)


@register_model
def fast_itpn_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=384, depths=(2, 2, 20), num_heads=6, **_FAST_ITPN)
    return create_backbone(HiViT, "fast_itpn_small_patch16_224", pretrained, model_args, kwargs)


@register_model
def fast_itpn_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=512, depths=(3, 3, 24), num_heads=8, **_FAST_ITPN)
    return create_backbone(HiViT, "fast_itpn_base_patch16_224", pretrained, model_args, kwargs)


@register_model
def fast_itpn_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=768, depths=(2, 2, 40), num_heads=12, **_FAST_ITPN)
    return create_backbone(HiViT, "fast_itpn_large_patch16_224", pretrained, model_args, kwargs)
