"""COCO 2017 instances: generator, validator and detection/instance-segmentation dataset.

Layout (``url``)::

    annotations/instances_train2017.json
    annotations/instances_val2017.json
    train2017/<id:012d>.jpg
    val2017/<id:012d>.jpg

Annotations may carry polygons (lists of ``x, y`` pairs), uncompressed RLE (``counts`` list, as COCO's
crowd regions) or compressed RLE (``counts`` string); pycocotools turns all three into masks.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors

from . import _render
from ._base import RobustDataset, resolve_skip
from ._check import Checker
from ._gen import GeneratedData, check_size, empty_target, sample_rng
from .classes import coco_categories
from .errors import AnnotationSchemaError, LayoutError, ValidationReport
from .fs import display, join, open_fs, read_bytes, write_bytes

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


# ------------------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------------------
def generated_categories(num_classes: int) -> list[tuple[int, str]]:
    """The COCO categories the generator draws: ``num_classes`` of the 80, spread over the id range."""
    cats = coco_categories()
    if not 1 <= num_classes <= len(cats):
        raise ValueError(f"num_classes must be in 1..{len(cats)}, got {num_classes}")
    return [cats[(k * len(cats)) // num_classes] for k in range(num_classes)]


def _render_coco_image(
    seed: int, split_index: int, index: int, used: list[tuple[int, str]], image_size: int,
    objects_per_image: tuple[int, int], crowd_fraction: float,
) -> tuple[int, int, bytes, list[dict[str, Any]]]:
    rng = sample_rng(seed, split_index, index)
    short = max(16, (image_size * 3 // 4) // 16 * 16)
    width, height = (image_size, short) if rng.random() < 0.5 else (short, image_size)
    if rng.random() < 0.3:
        width = height = image_size
    canvas = _render.background(height, width, rng)
    count = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    circles = _render.place_without_overlap(rng, count, height, width, (0.12 * min(width, height), 0.26 * min(width, height)))
    objects: list[dict[str, Any]] = []
    for cx, cy, radius in circles:
        label = int(rng.integers(0, len(used)))
        style = _render.class_style(label)
        polygon = np.round(_render.shape_polygon(style.shape, cx, cy, radius, rng.uniform(0, 2 * np.pi)), 2)
        full = _render.rasterize(polygon, height, width)  # exactly the mask pycocotools gives readers
        _render.paint(canvas, 0, 0, full, style, rng)
        full = full.astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(full))
        crowd = bool(rng.random() < crowd_fraction)
        if crowd:
            segmentation: Any = uncompressed_rle(full)
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
        else:
            segmentation = [[float(v) for v in polygon.ravel()]]
            lo, hi = polygon.min(0), polygon.max(0)
            bbox = [float(round(lo[0], 2)), float(round(lo[1], 2)), float(round(hi[0] - lo[0], 2)), float(round(hi[1] - lo[1], 2))]
        objects.append({
            "category_id": used[label][0],
            "label": label,
            "bbox": bbox,
            "iscrowd": int(crowd),
            "segmentation": segmentation,
            "area": float(mask_utils.area(rle)),
            "rle": {"size": rle["size"], "counts": rle["counts"].decode()},
        })
    return width, height, _render.encode_image(canvas, "JPEG"), objects


def generate_coco(
    url: str,
    *,
    seed: int = 0,
    num_classes: int = 4,
    train_images: int = 32,
    val_images: int = 8,
    image_size: int = 160,
    objects_per_image: tuple[int, int] = (1, 4),
    crowd_fraction: float = 0.1,
    overwrite: bool = False,
) -> GeneratedData:
    """Write a COCO 2017 stand-in: non-overlapping shapes, one shape/colour/texture per category.

    The json lists all 80 COCO categories with their real ids; ``num_classes`` of them are drawn.
    Non-crowd objects are polygons, crowd objects (``crowd_fraction``) uncompressed RLE, as in COCO.
    """
    check_size("image_size", image_size, 32)
    lo, hi = objects_per_image
    if not 0 <= lo <= hi:
        raise ValueError(f"objects_per_image must be (min, max) with 0 <= min <= max, got {objects_per_image}")
    start = time.perf_counter()
    params = dict(seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                  image_size=image_size, objects_per_image=[lo, hi], crowd_fraction=crowd_fraction)
    used = generated_categories(num_classes)
    fs, root = empty_target(url, overwrite)
    result = GeneratedData(kind="coco", url=url, params=params)
    categories = [{"id": cat_id, "name": name, "supercategory": ""} for cat_id, name in coco_categories()]
    for split_index, (split, count) in enumerate((("train", train_images), ("val", val_images))):
        images, annotations = [], []
        for i in range(count):
            width, height, data, objects = _render_coco_image(
                seed, split_index, i, used, image_size, (lo, hi), crowd_fraction)
            image_id = i + 1
            file_name = f"{image_id:012d}.jpg"
            write_bytes(fs, join(root, image_dir(split), file_name), data)
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for obj in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["category_id"],
                    "bbox": obj["bbox"], "area": obj["area"], "iscrowd": obj["iscrowd"],
                    "segmentation": obj["segmentation"],
                })
            result.samples.append({"split": split, "file": f"{image_dir(split)}/{file_name}", "image_id": image_id,
                                   "width": width, "height": height, "objects": objects})
        document = {
            "info": {"description": "itpn generated COCO 2017 stand-in", "version": "1.0", "year": 2017},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        write_bytes(fs, join(root, annotation_file(split)), json.dumps(document).encode())
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------------------
# dataset
# ------------------------------------------------------------------------------------------------------
def load_coco(url: str, split: str) -> COCO:
    """The split's annotation file as a pycocotools ``COCO`` object (read through fsspec)."""
    fs, root = open_fs(url)
    rel = annotation_file(split)
    path = join(root, rel)
    if not fs.exists(path):
        raise LayoutError(f"no annotation file for split {split!r}", file=display(url, rel),
                          fix=f"put instances_{split}{YEAR}.json under annotations/")
    try:
        document = json.loads(read_bytes(fs, path))
    except json.JSONDecodeError as exc:
        raise AnnotationSchemaError(f"not valid JSON: {exc.msg}", file=display(url, rel),
                                    record=f"line {exc.lineno} column {exc.colno}", fix="re-copy the file") from exc
    for key in ("images", "annotations", "categories"):
        if key not in document:
            raise AnnotationSchemaError(f"missing top-level key {key!r}", file=display(url, rel),
                                        fix="use an instances_*.json file of the COCO format")
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
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transforms = transforms
        self.with_masks = with_masks
        self.include_crowd = include_crowd
        self.coco = load_coco(url, split)
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
        return f"{image_dir(self.split)}/{self.coco.imgs[image_id]['file_name']}"

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


# ------------------------------------------------------------------------------------------------------
# validator
# ------------------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


Finding = tuple[str, str, str, str]  # (error code, message, fix, where inside the annotation)


def _segmentation_problems(seg: Any, width: int, height: int) -> list[Finding]:
    fix = "fix or remove the segmentation"
    found: list[Finding] = []
    if isinstance(seg, list):
        for p, poly in enumerate(seg):
            where = f", polygon {p}"
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                found.append(("AnnotationSchemaError", "polygon must be a flat list of numbers", fix, where))
            elif len(poly) % 2:
                found.append(("PolygonError", f"polygon has an odd number of coordinates ({len(poly)})", "give x, y pairs",
                              where))
            elif len(poly) < 6:
                found.append(("PolygonError", f"polygon has {len(poly) // 2} point(s), at least 3 are needed", fix, where))
            else:
                xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
                if xs.min() < -TOLERANCE or ys.min() < -TOLERANCE or xs.max() > width + TOLERANCE or ys.max() > height + TOLERANCE:
                    found.append(("PolygonError", f"polygon reaches outside the {width}x{height} image "
                                  f"(x {xs.min():.1f}..{xs.max():.1f}, y {ys.min():.1f}..{ys.max():.1f})", fix, where))
    elif isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if size != [height, width]:
            found.append(("AnnotationSchemaError", f"RLE size {size} differs from the image's [{height}, {width}]", fix, ""))
        elif isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
                found.append(("AnnotationSchemaError", "uncompressed RLE counts must be non-negative integers "
                              f"summing to {height * width}", fix, ""))
        elif isinstance(counts, str):
            try:
                decoded = mask_utils.decode({"size": size, "counts": counts.encode()})
            except (ValueError, TypeError) as exc:
                found.append(("AnnotationSchemaError", f"compressed RLE cannot be decoded: {exc}", fix, ""))
            else:
                if decoded.shape != (height, width):
                    found.append(("AnnotationSchemaError", "compressed RLE has the wrong size", fix, ""))
        else:
            found.append(("AnnotationSchemaError", "RLE needs 'counts' as a list or string", fix, ""))
    else:
        found.append(("AnnotationSchemaError", "segmentation must be a list of polygons or an RLE dict", fix, ""))
    return found


def annotation_problems(ann: Any, image: dict[str, Any], category_ids: Iterable[int]) -> list[Finding]:
    """What is wrong with one COCO annotation record of ``image`` (empty when it is usable).

    The rule validation and :class:`CocoDetection` share: an annotation with any finding is dropped on
    its own, its image and the image's other annotations stay. Checked: required keys and integer ids,
    a known ``category_id``, ``bbox`` as ``[x, y, w, h]`` with ``w > 0`` and ``h > 0`` (COCO train2017
    holds boxes with ``h == 0``) inside the image (``TOLERANCE`` pixels of slack), ``iscrowd`` in {0, 1}
    and the segmentation (polygons with >= 3 points inside the image, or an RLE of the image's size).
    """
    fix = "fix or remove the annotation"
    if not isinstance(ann, dict):
        return [("AnnotationSchemaError", "annotation must be an object", fix, "")]
    missing = [k for k in ("id", "image_id", "category_id", "bbox") if k not in ann]
    if missing:
        return [("AnnotationSchemaError", f"annotation misses key(s) {missing}", "add id, image_id, category_id and bbox",
                 "")]
    wrong = [k for k in ("id", "image_id", "category_id") if not isinstance(ann[k], int) or isinstance(ann[k], bool)]
    if wrong:
        return [("AnnotationSchemaError", f"key(s) {wrong} must be integers", fix, "")]
    if ann["category_id"] not in category_ids:
        return [("UnknownClassError", f"category_id {ann['category_id']} is not in the categories list",
                 "use a listed category id", "")]
    width, height = image["width"], image["height"]
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return [("AnnotationSchemaError", f"bbox must be [x, y, w, h] numbers, got {bbox!r}", fix, "")]
    found: list[Finding] = []
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        found.append(("BoxOutOfRangeError", f"box {bbox} has no area", fix, ""))
    elif x < -TOLERANCE or y < -TOLERANCE or x + w > width + TOLERANCE or y + h > height + TOLERANCE:
        found.append(("BoxOutOfRangeError", f"box {bbox} (x, y, w, h) lies outside the {width}x{height} image",
                      "clip the box to the image or fix its coordinates", ""))
    if ann.get("iscrowd", 0) not in (0, 1):
        found.append(("AnnotationSchemaError", f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}", fix, ""))
    if "segmentation" in ann:
        found.extend(_segmentation_problems(ann["segmentation"], width, height))
    return found


def _validate_split(chk: Checker, split: str, reference_classes: list[str] | None) -> list[str] | None:
    rel = annotation_file(split)
    if rel not in chk.files:
        chk.add("LayoutError", rel, "annotation file is missing", f"put instances_{split}{YEAR}.json under annotations/",
                severity="fatal")
        return None
    data = chk.read(rel)
    if not data:
        chk.add("EmptyFileError", rel, "annotation file is empty (0 bytes)", "re-copy the file", severity="fatal")
        return None
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        record = f"line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else None
        chk.add("AnnotationSchemaError", rel, f"not valid JSON: {exc}", "re-copy the file", record=record, severity="fatal")
        return None
    if not isinstance(document, dict):
        chk.add("AnnotationSchemaError", rel, "top level must be a JSON object", "use a COCO instances file", severity="fatal")
        return None
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            problem = "missing key" if key not in document else "must be a list:"
            chk.add("AnnotationSchemaError", rel, f"{problem} {key!r}", "use a COCO instances file", severity="fatal")
    if chk.report.fatal:
        return None

    categories: dict[int, str] = {}
    for i, cat in enumerate(document["categories"]):
        record = f"categories[{i}]"
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            chk.add("AnnotationSchemaError", rel, "category needs an integer 'id' and a string 'name'",
                    "fix the categories list", record=record, severity="fatal")
        elif cat["id"] in categories:
            chk.add("DuplicateError", rel, f"category id {cat['id']} appears twice", "give each category one id",
                    record=record, severity="fatal")
        else:
            categories[cat["id"]] = cat["name"]
    classes = [categories[k] for k in sorted(categories)]
    if reference_classes is not None and classes != reference_classes:
        chk.add("UnknownClassError", rel, "categories differ from the train split's",
                "use the same categories list in every split", severity="fatal")
    if chk.report.fatal:
        return None

    images: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    folder = image_dir(split)
    for i, img in enumerate(document["images"]):
        record = f"images[{i}]" + (f" (id {img.get('id')})" if isinstance(img, dict) and "id" in img else "")
        if not isinstance(img, dict):
            chk.add("AnnotationSchemaError", rel, "image record must be an object", "fix the images list", record=record)
            continue
        sample = f"{folder}/{img['file_name']}" if isinstance(img.get("file_name"), str) else None
        missing = [k for k in ("id", "file_name", "width", "height") if k not in img]
        if missing:
            chk.add("AnnotationSchemaError", rel, f"image record misses key(s) {missing}",
                    "add id, file_name, width and height", record=record, sample=sample, split=split)
            continue
        if not isinstance(img["id"], int) or not all(isinstance(img[k], int) and img[k] > 0 for k in ("width", "height")):
            chk.add("AnnotationSchemaError", rel, "id must be an integer and width/height positive integers",
                    "fix the image record", record=record, sample=sample, split=split)
            continue
        if img["id"] in images:
            chk.add("DuplicateError", rel, f"image id {img['id']} appears twice", "give each image one id",
                    record=record, sample=sample, split=split)
            continue
        if img["file_name"] in names:
            chk.add("DuplicateError", rel, f"file_name {img['file_name']!r} is listed twice (ids {names[img['file_name']]} "
                    f"and {img['id']})", "list each image once", record=record, sample=sample, split=split)
            continue
        names[img["file_name"]] = img["id"]
        images[img["id"]] = img
        if sample not in chk.files:
            chk.add("LayoutError", sample, "image listed in the annotation file is missing",
                    f"copy it into {folder}/ or remove its record", record=f"{rel} {record}", sample=sample, split=split)

    ann_ids: set[int] = set()
    per_image: dict[int, int] = {}
    per_class: dict[str, int] = {name: 0 for name in classes}
    for i, ann in enumerate(document["annotations"]):
        record = f"annotations[{i}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict) and "id" in ann else "")
        unit = ("annotations", record)
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        img = images.get(image_id) if isinstance(image_id, int) and not isinstance(image_id, bool) else None
        if img is None and isinstance(ann, dict) and "image_id" in ann:
            chk.add("AnnotationSchemaError", rel, f"image_id {ann['image_id']!r} is not in the images list",
                    "remove the annotation or add its image", record=record, split=split, unit=unit)
            continue
        if img is None:  # no usable image_id: the schema check names what is missing
            img = {"width": 0, "height": 0}
        found = annotation_problems(ann, img, categories)
        repeated = isinstance(ann, dict) and "id" in ann and ann["id"] in ann_ids
        if isinstance(ann, dict) and "id" in ann:
            ann_ids.add(ann["id"])
        if repeated:  # the first record with an id wins, as in CocoDetection
            found = [("DuplicateError", f"annotation id {ann['id']} appears twice", "give each annotation one id", "")]
        for code, message, fix, where in found:
            chk.add(code, rel, message, fix, record=record + where, split=split, unit=unit)
        if found:
            continue
        per_image[img["id"]] = per_image.get(img["id"], 0) + 1
        per_class[categories[ann["category_id"]]] += 1

    to_decode = [f"{folder}/{img['file_name']}" for img in images.values()]
    to_decode = [s for s in to_decode if s in chk.files and not chk.is_skipped(split, s)]
    good = 0
    annotations = 0
    for sample, decoded in chk.decode_images(to_decode, split):
        if decoded is None:
            continue
        img = images[names[sample.split("/", 1)[1]]]
        if (decoded.width, decoded.height) != (img["width"], img["height"]):
            chk.add("AnnotationSchemaError", rel, f"image {sample} is {decoded.width}x{decoded.height} but the record "
                    f"says {img['width']}x{img['height']}", "fix width/height in the record",
                    record=f"image id {img['id']}", sample=sample, split=split)
            continue
        good += 1
        annotations += per_image.get(img["id"], 0)
    listed = {f"{folder}/{name}" for name in names}
    for extra in chk.under(folder):
        if extra not in listed:
            chk.add("LayoutError", extra, "image is not listed in the annotation file and is ignored",
                    f"add it to {rel} or delete it", severity="warning")
    chk.report.counts[f"{split}/images"] = good
    chk.report.counts[f"{split}/annotations"] = annotations
    chk.report.class_counts[split] = per_class
    if good == 0:
        chk.add("LayoutError", folder, f"split {split!r} has no usable image", f"put the images under {folder}/",
                severity="fatal")
    return classes


def validate_coco(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("coco", url, workers)
    classes = _validate_split(chk, "train", None)
    if classes is not None:
        chk.report.classes = classes
        _validate_split(chk, "val", classes)
    images = [rel for split in SPLITS for rel in chk.under(image_dir(split))]
    chk.report_duplicate_contents(images)
    return chk.finish(strict)
