"""ImageNet's layout: the splits, the ``classes.txt`` of the tar layout, the standard image counts."""
from __future__ import annotations

import io

from PIL import Image

from .._check import IMAGE_EXTENSIONS


SPLITS = ("train", "val")
CLASSES_FILE = "classes.txt"
STANDARD_COUNTS = {"train": 1_281_167, "val": 50_000}


def is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
