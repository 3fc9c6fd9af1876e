"""ADE20K's layout and mask values: where ``ADEChallengeData2016/`` lies (``find_base``), and the
cleaning (``clear_bad_values``) and shift (``reduce_zero_label``) of the annotation values."""
from __future__ import annotations

import posixpath

import numpy as np

from ..classes import ADE20K_CLASSES, ADE20K_IGNORE_INDEX
from ..fs import join, open_fs


BASE = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
NUM_CLASSES = len(ADE20K_CLASSES)


def find_base(url: str) -> str:
    """The prefix (relative to ``url``) of the ``images/`` and ``annotations/`` folders."""
    fs, root = open_fs(url)
    return BASE if fs.exists(join(root, BASE)) else ""


def rel_path(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if base else posixpath.join(*parts)


def clear_bad_values(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(mask with values above 150 set to 0, how many pixels that changed)``.

    A value outside 0..150 is the smallest bad unit of a mask: only those pixels become 0 ("other",
    which ``reduce_zero_label`` turns into the ignore index), the image and its other pixels stay.
    """
    bad = mask > NUM_CLASSES
    count = int(bad.sum())
    if count:
        mask = np.where(bad, 0, mask).astype(mask.dtype)
    return mask, count


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """0 → 255 (ignore), v → v - 1 for v in 1..150."""
    out = mask.astype(np.int64) - 1
    out[mask == 0] = ADE20K_IGNORE_INDEX
    return out
