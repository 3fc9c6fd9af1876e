"""COCO 2017's and Objects365 v2's layouts (annotation files, image folders) and COCO's uncompressed RLE
(``uncompressed_rle``)."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np




SPLITS = ("train", "val")
TOLERANCE = 1.0  # pixels a box or polygon may reach past the image border (float rounding in real files)


@dataclass(frozen=True)
class CocoStyleLayout:
    """Where a data set in the COCO annotation format keeps its files: ``annotations`` (the annotation file
    of a split, ``{split}`` filled in), ``images`` (the split's image folder) and ``patch_folders``: the
    image of an annotation record is ``<images>/<its file_name's last folder>/<its name>``, as Objects365
    v2 is laid out (its json names ``images/v1/patch8/objects365_v1_00420917.jpg``, the file lies at
    ``train/patch8/objects365_v1_00420917.jpg``; mmdet's ``Objects365V2Dataset`` reads it the same way),
    instead of ``<images>/<file_name>`` (COCO)."""

    kind: str
    annotations: str
    images: str
    patch_folders: bool = False

    def annotation_file(self, split: str) -> str:
        return self.annotations.format(split=split)

    def image_dir(self, split: str) -> str:
        return self.images.format(split=split)

    def image_path(self, split: str, file_name: str) -> str:
        """The image of the record naming ``file_name``, relative to the data set's root."""
        if self.patch_folders:
            folder, name = posixpath.split(file_name)
            file_name = posixpath.join(posixpath.basename(folder), name)
        return f"{self.image_dir(split)}/{file_name}"


COCO_2017 = CocoStyleLayout("coco", "annotations/instances_{split}2017.json", "{split}2017")
OBJECTS365_V2 = CocoStyleLayout("objects365", "annotations/zhiyuan_objv2_{split}.json", "{split}", patch_folders=True)


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
