"""Pretrained configs that point to local files, and the one constructor every factory uses."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg
from torch import nn

from .checkpoint import load_checkpoint

CHECKPOINT_DIR_ENV = "ITPN_CHECKPOINT_DIR"


def checkpoint_dir() -> Path:
    """Where ``pretrained=True`` looks for released weights (nothing is ever downloaded): ``$ITPN_CHECKPOINT_DIR``
    as it is when the weights are loaded, default ``~/.cache/itpn/checkpoints``."""
    return Path(os.environ.get(CHECKPOINT_DIR_ENV, "~/.cache/itpn/checkpoints")).expanduser()


def pretrained_file(file: str) -> Path:
    """The file a pretrained config's ``file`` names: an absolute path (``pretrained_cfg_overlay``) as it
    is, a bare name (our default configs) inside :func:`checkpoint_dir` read now, not at ``import itpn.models``."""
    path = Path(file).expanduser()
    return path if path.is_absolute() else checkpoint_dir() / path


def default_cfg(name: str, file: str | None = None, **overrides: Any) -> dict[str, Any]:
    """timm's pretrained config of model ``name``; ``file`` (default ``<name>.pth``) is resolved against
    ``$ITPN_CHECKPOINT_DIR`` when the weights are loaded (:func:`pretrained_file`)."""
    cfg = dict(
        file=file or f"{name}.pth",
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
    if kwargs.get("pyramid"):
        kwargs.setdefault("num_classes", 0)
    model = build_model_with_cfg(model_cls, variant, pretrained=False, **dict(model_args, **kwargs))
    if pretrained:
        file = model.pretrained_cfg.get("file")
        path = pretrained_file(file) if file else None
        if path is None or not path.exists():
            raise FileNotFoundError(
                f"pretrained weights for {variant} not found at {path}: nothing is downloaded. Put the released "
                f"checkpoint there (or set {CHECKPOINT_DIR_ENV}), or pass "
                f"pretrained_cfg_overlay=dict(file='/path/to/checkpoint.pth')"
            )
        load_checkpoint(model, str(path))
    return model
