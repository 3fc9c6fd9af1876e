"""``load_coco`` and ``CocoDetection``: COCO instances as a detection / instance-segmentation dataset."""
from __future__ import annotations

import contextlib
import io
import json
import posixpath
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from .._base import RobustDataset, resolve_skip
from ..errors import AnnotationSchemaError, LayoutError
from ..fs import display, join, open_fs, read_bytes
from .layout import COCO_2017, CocoStyleLayout
from .validate import annotation_problems


def load_coco(url: str, split: str, layout: CocoStyleLayout = COCO_2017) -> Any:
    """The split's annotation file (where ``layout`` keeps it) as a pycocotools ``COCO`` object, read through
    fsspec."""
    fs, root = open_fs(url)
    rel = layout.annotation_file(split)
    path = join(root, rel)
    if not fs.exists(path):
        raise LayoutError(f"no annotation file for split {split!r}", file=display(url, rel),
                          fix=f"put {posixpath.basename(rel)} under {posixpath.dirname(rel)}/")
    try:
        document = json.loads(read_bytes(fs, path))
    except json.JSONDecodeError as exc:
        raise AnnotationSchemaError(f"not valid JSON: {exc.msg}", file=display(url, rel),
                                    record=f"line {exc.lineno} column {exc.colno}", fix="re-copy the file") from exc
    for key in ("images", "annotations", "categories"):
        if key not in document:
            raise AnnotationSchemaError(f"missing top-level key {key!r}", file=display(url, rel),
                                        fix="use an instances_*.json file of the COCO format")
    from pycocotools.coco import COCO  # pycocotools is imported where it is used: itpn.data, and so the pre-training, import without it

    coco = COCO()
    coco.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(RobustDataset):
    """COCO boxes, labels and instance masks as ``(image, target)`` for torchvision v2 transforms.

    ``image`` is a ``tv_tensors.Image`` (uint8, CHW); ``target`` holds ``boxes`` (``BoundingBoxes``, XYXY),
    ``labels`` (contiguous 0..K-1 over the sorted category ids; ``classes[label]`` is the name),
    ``category_ids``, ``iscrowd``, ``area``, ``image_id`` and, with ``with_masks``, ``masks``
    (``tv_tensors.Mask``, N×H×W uint8). Crowd regions are kept and flagged (``include_crowd=False`` drops
    them); ``filter_empty`` leaves out images without a non-crowd object (as detection training does).

    A bad annotation (a zero-height box, a box outside the image, an unknown category, a broken polygon:
    :func:`annotation_problems`, the rule validation applies; a repeated annotation id after its first
    record) is dropped on its own and counted in ``dropped_annotations`` (ids); the image keeps its good
    annotations. Images in ``skip`` (default: the manifest's skipped list) are left out.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        with_masks: bool = True,
        include_crowd: bool = True,
        filter_empty: bool = False,
        skip: Iterable[str] | None = None,
        strict: bool = False,
        layout: CocoStyleLayout = COCO_2017,
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transforms = transforms
        self.with_masks = with_masks
        self.include_crowd = include_crowd
        self.layout = layout
        self.coco = load_coco(url, split, layout)
        categories = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        self.cat_ids = [int(c["id"]) for c in categories]
        self.classes = [str(c["name"]) for c in categories]
        self.cat_to_label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.dropped_annotations: set[int] = set()
        seen: set[int] = set()
        self._repeats: set[int] = set()  # identities of records whose annotation id appeared before
        for ann in self.coco.dataset["annotations"]:
            if ann["id"] in seen:
                self._repeats.add(id(ann))
            seen.add(ann["id"])
        exclude = resolve_skip(url, skip)
        self.ids: list[int] = []
        for image_id in sorted(self.coco.imgs):
            if self._image_key(image_id) in exclude:
                continue
            if filter_empty and not any(not a.get("iscrowd", 0) for a in self._good_annotations(image_id)):
                continue
            self.ids.append(image_id)

    def _image_key(self, image_id: int) -> str:
        return self.layout.image_path(self.split, self.coco.imgs[image_id]["file_name"])

    def __len__(self) -> int:
        return len(self.ids)

    def _key(self, index: int) -> str:
        return self._image_key(self.ids[index])

    def _good_annotations(self, image_id: int) -> list[dict[str, Any]]:
        image = self.coco.imgs[image_id]
        good = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if id(ann) in self._repeats or annotation_problems(ann, image, self.cat_to_label):
                self.dropped_annotations.add(ann["id"])
            else:
                good.append(ann)
        return good

    def annotations(self, index: int) -> list[dict[str, Any]]:
        """The usable COCO annotation records of sample ``index`` (polygons/RLE as in the file)."""
        anns = self._good_annotations(self.ids[index])
        return [a for a in anns if self.include_crowd or not a.get("iscrowd", 0)]

    def _load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        with Image.open(io.BytesIO(read_bytes(self.fs, self.path(self._key(index))))) as pil:
            pixels = np.array(pil.convert("RGB"))
        height, width = pixels.shape[:2]
        if (width, height) != (info["width"], info["height"]):
            raise AnnotationSchemaError(
                f"image is {width}x{height} but the json says {info['width']}x{info['height']}",
                file=display(self.url, self._key(index)), fix="fix width/height in the annotation file")
        anns = self.annotations(index)
        boxes = np.zeros((len(anns), 4), dtype=np.float32)
        for row, ann in enumerate(anns):
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes[row] = (x, y, x + w, y + h)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "category_ids": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "image_id": image_id,
        }
        if self.with_masks:
            masks = np.zeros((len(anns), height, width), dtype=np.uint8)
            for row, ann in enumerate(anns):
                if ann.get("segmentation"):
                    masks[row] = self.coco.annToMask(ann)
            target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
        return image, target

    def _finish(self, sample: tuple[tv_tensors.Image, dict[str, Any]]) -> Any:
        return self.transforms(*sample) if self.transforms else sample
