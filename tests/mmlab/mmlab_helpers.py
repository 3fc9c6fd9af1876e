"""Paths, tiny models and exports for the OpenMMLab adapter tests."""
from pathlib import Path

import timm
import torch

from itpn.models import save_safetensors

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = dict(depths=(1, 1, 2))
TINY_MODEL = "fast_itpn_tiny_patch16_224"


def write_export(path: Path, model_name: str = TINY_MODEL, seed: int = 1, **kwargs) -> str:
    """A pre-training export as itpn.pretrain writes it: backbone + pyramid safetensors."""
    torch.manual_seed(seed)
    encoder = timm.create_model(model_name, pyramid=True, **{**TINY, **kwargs})
    save_safetensors(encoder.state_dict(), str(path), {"model": model_name, "model_kwargs": "{}"})
    return str(path)
