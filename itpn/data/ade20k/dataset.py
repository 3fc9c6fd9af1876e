"""``ADE20KSegmentation``: ADE20K's image / mask pairs as a semantic-segmentation dataset."""
from __future__ import annotations

import io
import posixpath
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from .._base import RobustDataset, resolve_skip
from ..classes import ADE20K_CLASSES, ADE20K_IGNORE_INDEX
from ..errors import LayoutError, MaskValueError
from ..fs import display, join, list_files, read_bytes
from .layout import BASE, SPLITS, clear_bad_values, find_base, reduce_zero_label, rel_path


class ADE20KSegmentation(RobustDataset):
    """``(image, mask)``: ``tv_tensors.Image`` uint8 CHW and ``tv_tensors.Mask`` int64 HW.

    With ``reduce_zero_label`` (default) mask values are 0..149 plus 255 = ignore; ``classes`` has the 150
    names. ``transforms`` gets ``(image, mask)`` (see :func:`build_segmentation_transform`). Mask
    pixels with a value above 150 are set to 0 ("other", ignored) and counted in ``dropped_pixels``
    (:func:`clear_bad_values`); the image is kept.
    """

    ignore_index = ADE20K_IGNORE_INDEX
    classes = list(ADE20K_CLASSES)

    def __init__(
        self,
        url: str,
        split: str = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        reduce_zero_label: bool = True,
        skip: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(url, strict=strict)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.split = split
        self.transforms = transforms
        self.reduce_zero_label = reduce_zero_label
        base = find_base(url)
        image_dir = rel_path(base, "images", SPLITS[split])
        mask_dir = rel_path(base, "annotations", SPLITS[split])
        images = {posixpath.splitext(r)[0]: r for r in list_files(self.fs, join(self.root, image_dir))}
        masks = {posixpath.splitext(r)[0]: r for r in list_files(self.fs, join(self.root, mask_dir))}
        if not images:
            raise LayoutError(f"no images for split {split!r}", file=display(url, image_dir),
                              fix=f"point the URL at the folder holding {BASE}/")
        self.dropped_pixels: dict[str, int] = {}  # mask file -> pixels set to 0
        exclude = resolve_skip(url, skip)
        self.samples: list[tuple[str, str]] = []
        for stem in sorted(images):
            image_rel = rel_path(image_dir, images[stem])
            if stem in masks and image_rel not in exclude:
                self.samples.append((image_rel, rel_path(mask_dir, masks[stem])))

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        return self.samples[index][0]

    def _load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_rel, mask_rel = self.samples[index]
        with Image.open(io.BytesIO(read_bytes(self.fs, self.path(image_rel)))) as pil:
            pixels = np.array(pil.convert("RGB"))
        with Image.open(io.BytesIO(read_bytes(self.fs, self.path(mask_rel)))) as pil:
            if pil.mode not in ("L", "P"):
                raise MaskValueError(f"mask mode is {pil.mode}, a single-channel 8-bit PNG is needed",
                                     file=display(self.url, mask_rel), fix="save the mask as mode L")
            mask = np.array(pil)
        if mask.shape != pixels.shape[:2]:
            raise MaskValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {pixels.shape[1]}x{pixels.shape[0]}",
                                 file=display(self.url, mask_rel), fix="use the mask that belongs to this image")
        mask, bad = clear_bad_values(mask)
        if bad:
            self.dropped_pixels[mask_rel] = bad
        labels = reduce_zero_label(mask) if self.reduce_zero_label else mask.astype(np.int64)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
        return image, tv_tensors.Mask(torch.from_numpy(labels))

    def _finish(self, sample: tuple[tv_tensors.Image, tv_tensors.Mask]) -> Any:
        return self.transforms(*sample) if self.transforms else sample
