"""COCO 2017's layout (annotation files, image folders) and its uncompressed RLE (``uncompressed_rle``)."""
from __future__ import annotations

from typing import Any

import numpy as np




SPLITS = ("train", "val")
YEAR = "2017"
TOLERANCE = 1.0  # pixels a box or polygon may reach past the image border (float rounding in real files)


def annotation_file(split: str) -> str:
    return f"annotations/instances_{split}{YEAR}.json"


def image_dir(split: str) -> str:
    return f"{split}{YEAR}"


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE (as used for crowd regions): run lengths over the column-major pixels,
    starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}
