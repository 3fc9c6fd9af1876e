from pathlib import Path

import pytest
import timm
import torch

from itpn.data import generate_imagenet
from itpn.models import save_safetensors

TINY = dict(depths=(1, 1, 2))


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-class ImageNet folder: 8 train and 4 val images per class, 32 px."""
    url = str(tmp_path_factory.mktemp("imagenet") / "data")
    generate_imagenet(url, seed=0, num_classes=4, train_per_class=8, val_per_class=4, image_size=32)
    return url


def write_export(path: Path, model_name: str = "fast_itpn_tiny_patch16_224", seed: int = 1, **kwargs) -> str:
    """A pre-training export as itpn.pretrain writes it: backbone + pyramid safetensors with metadata."""
    torch.manual_seed(seed)
    encoder = timm.create_model(model_name, pyramid=True, **{**TINY, **kwargs})
    save_safetensors(encoder.state_dict(), str(path), {"model": model_name, "model_kwargs": "{}"})
    return str(path)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_export(tmp_path_factory.mktemp("export") / "model.safetensors")
