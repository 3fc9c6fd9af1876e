"""Fixtures for the fine-tuning tests: a tiny generated ImageNet folder and a pre-training export."""
import pytest

from itpn.data import generate_imagenet
from finetune_helpers import write_export


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-class ImageNet folder: 8 train and 4 val images per class, 32 px."""
    url = str(tmp_path_factory.mktemp("imagenet") / "data")
    generate_imagenet(url, seed=0, num_classes=4, train_per_class=8, val_per_class=4, image_size=32)
    return url


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_export(tmp_path_factory.mktemp("export") / "model.safetensors")
