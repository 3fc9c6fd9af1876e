"""Tiny models and generated images for the pre-training tests (CPU, seconds each)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from itpn.pretrain import PretrainConfig

TINY_ARCH = {"depths": [1, 1, 2], "embed_dim": 64, "num_heads": 2, "fpn_dim": 32}
TINY_MODEL = dict(model="fast_itpn_tiny_patch16_224", model_kwargs=TINY_ARCH, img_size=32,
                  decoder_dim=32, decoder_depth=1, decoder_heads=2, drop_path=0.0)


def _tiny_config(output: Path, **overrides: Any) -> PretrainConfig:
    values = dict(TINY_MODEL, batch_size=4, total_steps=6, warmup_steps=1, lr=1e-3, num_workers=0,
                  output_url=str(output), checkpoint_every=100, progress=False, amp_dtype="fp32", device="cpu")
    values.update(overrides)
    return PretrainConfig.from_dict(values)


@pytest.fixture
def tiny_arch() -> dict[str, Any]:
    """``timm.create_model`` arguments of the tiny Fast-iTPN the configs below build (32 px input)."""
    return dict(TINY_ARCH, depths=tuple(TINY_ARCH["depths"]), img_size=32)


@pytest.fixture
def tiny_config() -> Callable[..., PretrainConfig]:
    """``tiny_config(output_dir, **overrides)``: a 64-wide Fast-iTPN with stage depths 1+1+2 on 32 px images."""
    return _tiny_config


def write_image_folder(root: Path, count: int, size: int = 40, seed: int = 0) -> Path:
    """``root/train/<class>/<i>.JPEG`` with smooth random images (two classes)."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        folder = root / "train" / f"n0000000{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        image.save(folder / f"img_{index:03d}.JPEG", quality=90)
    return root


class TensorImages(torch.utils.data.Dataset):
    """Fixed [0, 1] images, already at the training size."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


@pytest.fixture
def smooth_images() -> Callable[..., torch.Tensor]:
    return _smooth_images


@pytest.fixture
def tensor_dataset() -> type[TensorImages]:
    return TensorImages


def _smooth_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", 16)


@pytest.fixture
def make_image_folder() -> Callable[..., Path]:
    return write_image_folder


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a busy shared machine two threads mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
