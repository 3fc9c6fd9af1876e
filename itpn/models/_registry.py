"""Pretrained configs that point to local files, and the one constructor every factory uses."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg
from torch import nn

CHECKPOINT_DIR_ENV = "ITPN_CHECKPOINT_DIR"


def checkpoint_dir() -> Path:
    """Where ``pretrained=True`` looks for released weights (nothing is ever downloaded)."""
    return Path(os.environ.get(CHECKPOINT_DIR_ENV, "~/.cache/itpn/checkpoints")).expanduser()


def default_cfg(name: str, file: str | None = None, **overrides: Any) -> dict[str, Any]:
    cfg = dict(
        file=str(checkpoint_dir() / (file or f"{name}.pth")),
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=None,
        crop_pct=0.9,
        interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.proj",
        classifier="head",
        license="apache-2.0",
    )
    cfg.update(overrides)
    return cfg


def create_backbone(model_cls: type[nn.Module], variant: str, pretrained: bool, model_args: dict[str, Any],
                    kwargs: dict[str, Any]) -> nn.Module:
    """Build ``variant`` through timm; with ``pretrained`` load its local ``file`` by ``load_checkpoint``."""
    from .checkpoint import load_checkpoint

    if kwargs.get("pyramid"):
        kwargs.setdefault("num_classes", 0)
    model = build_model_with_cfg(model_cls, variant, pretrained=False, **dict(model_args, **kwargs))
    if pretrained:
        file = model.pretrained_cfg.get("file")
        if not file or not Path(file).expanduser().exists():
            raise FileNotFoundError(
                f"pretrained weights for {variant} not found at {file}: nothing is downloaded. Put the released "
                f"checkpoint there (or set {CHECKPOINT_DIR_ENV}), or pass "
                f"pretrained_cfg_overlay=dict(file='/path/to/checkpoint.pth')"
            )
        load_checkpoint(model, file)
    return model
