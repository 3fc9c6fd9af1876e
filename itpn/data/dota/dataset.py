"""``DOTADataset``: DOTA images with their oriented objects."""
from __future__ import annotations

import io
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from .._base import RobustDataset, resolve_skip
from ..classes import DOTA_CLASSES
from ..errors import LayoutError
from ..fs import display, read_bytes
from .layout import DotaObject, LABELLED_SPLITS, file_stem, image_label_pairs, usable_objects


class DOTADataset(RobustDataset):
    """DOTA images with oriented boxes as ``(image, target)`` for torchvision v2 transforms.

    ``target``: ``boxes`` (``BoundingBoxes`` in ``XYXYXYXY`` format, the 4 corners), ``labels`` (index in
    :data:`DOTA_CLASSES`), ``difficulty``, ``image_name``. Convert to ``CXCYWHR`` with
    ``torchvision.transforms.v2.functional.convert_bounding_box_format`` where a head needs it.
    Works on full images and on the patches written by :func:`split_dota` (same layout). A bad label
    line (:func:`usable_objects`) is dropped on its own and counted in ``dropped_lines``
    (``(label file, line number)``); the image keeps its other objects.
    """

    classes = list(DOTA_CLASSES)

    def __init__(
        self,
        url: str,
        split: str = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        include_difficult: bool = True,
        filter_empty: bool = False,
        skip: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transforms = transforms
        self.include_difficult = include_difficult
        pairs = image_label_pairs(self.fs, self.root, split)
        if not pairs:
            raise LayoutError(f"no images for split {split!r}", file=display(url, f"{split}/images"),
                              fix="point the URL at the folder holding train/images and train/labelTxt")
        self.dropped_lines: set[tuple[str, int]] = set()
        exclude = resolve_skip(url, skip)
        self.samples = [(image, label) for image, label in pairs if image not in exclude]
        if split in LABELLED_SPLITS:
            self.samples = [(image, label) for image, label in self.samples if label is not None]
        if filter_empty:
            self.samples = [s for s in self.samples if s[1] is not None and self._objects(s[1])]

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        return self.samples[index][0]

    def _objects(self, label_rel: str, width: int | None = None, height: int | None = None) -> list[DotaObject]:
        text = read_bytes(self.fs, self.path(label_rel)).decode()
        _, objects, problems = usable_objects(text, width, height)
        self.dropped_lines.update((label_rel, p.line) for p in problems)
        return [o for o in objects if self.include_difficult or o.difficulty != 1]

    def _load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_rel, label_rel = self.samples[index]
        with Image.open(io.BytesIO(read_bytes(self.fs, self.path(image_rel)))) as pil:
            pixels = np.array(pil.convert("RGB"))
        height, width = pixels.shape[:2]
        objects = self._objects(label_rel, width, height) if label_rel else []
        polys = np.array([o.polygon for o in objects], dtype=np.float32).reshape(-1, 8)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(polys), format="XYXYXYXY", canvas_size=(height, width)),
            "labels": torch.tensor([DOTA_CLASSES.index(o.name) for o in objects], dtype=torch.int64),
            "difficulty": torch.tensor([o.difficulty for o in objects], dtype=torch.int64),
            "image_name": file_stem(image_rel),
        }
        return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous()), target

    def _finish(self, sample: tuple[tv_tensors.Image, dict[str, Any]]) -> Any:
        return self.transforms(*sample) if self.transforms else sample
