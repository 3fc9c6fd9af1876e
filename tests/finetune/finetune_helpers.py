"""Tiny models and exports for the fine-tuning tests."""
from pathlib import Path

import timm
import torch

from itpn.models import save_safetensors

TINY = dict(depths=(1, 1, 2))


def write_export(path: Path, model_name: str = "fast_itpn_tiny_patch16_224", seed: int = 1, **kwargs) -> str:
    """A pre-training export as itpn.pretrain writes it: backbone + pyramid safetensors with metadata."""
    torch.manual_seed(seed)
    encoder = timm.create_model(model_name, pyramid=True, **{**TINY, **kwargs})
    save_safetensors(encoder.state_dict(), str(path), {"model": model_name, "model_kwargs": "{}"})
    return str(path)
