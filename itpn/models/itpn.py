"""iTPN: HiViT plus the feature pyramid, pre-trained together (Tian et al., CVPR 2023).

Classification factories build the released fine-tuning layout (no pyramid, mean pooling then
LayerNorm); ``pyramid=True`` adds the pyramid for detection, segmentation and pre-training.
"""
from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.models import generate_default_cfgs, register_model

from ._registry import create_backbone, default_cfg
from .hivit import HiViT

default_cfgs = generate_default_cfgs({
    name: default_cfg(name, mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD)
    for name in ("itpn_base_patch16_224", "itpn_large_patch16_224")
})

_ITPN = dict(stem_mlp_ratio=3.0, mlp_ratio=4.0, qkv_bias="qkv", patch_norm=True, rpe=True, final_norm="post_pool")


@register_model
def itpn_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=512, depths=(3, 3, 24), num_heads=8, **_ITPN)
    return create_backbone(HiViT, "itpn_base_patch16_224", pretrained, model_args, kwargs)


@register_model
def itpn_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=768, depths=(2, 2, 40), num_heads=12, **_ITPN)
    return create_backbone(HiViT, "itpn_large_patch16_224", pretrained, model_args, kwargs)
