"""Shared pieces of the generators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from ._check import MANIFEST_NAME
from .fs import list_files, open_fs


@dataclass
class GeneratedData:
    """What a generator wrote: the parameters and the ground truth of every sample (for round-trip checks)."""

    kind: str
    url: str
    params: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def empty_target(url: str, overwrite: bool) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open ``url`` for writing a new data set; refuses to mix with existing files unless ``overwrite``."""
    fs, root = open_fs(url)
    existing = [rel for rel in list_files(fs, root) if rel != MANIFEST_NAME]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{url} already holds {len(existing)} file(s) (e.g. {existing[0]}). "
                "Fix: generate into an empty URL or pass overwrite=True to replace them."
            )
        fs.rm(root, recursive=True)
    fs.makedirs(root, exist_ok=True)
    return fs, root


def sample_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per sample, so outputs do not depend on generation order."""
    return np.random.default_rng([seed, *keys])


def check_size(name: str, value: int, minimum: int) -> None:
    if value < minimum or value % 16:
        raise ValueError(f"{name} must be a multiple of 16 and at least {minimum}, got {value}")


def check_count_range(name: str, value: tuple[int, int]) -> tuple[int, int]:
    """``value`` as ``(low, high)`` counts; ``ValueError`` naming ``name`` unless ``0 <= low <= high``."""
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {value}")
    return low, high
