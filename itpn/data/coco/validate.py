"""``validate_coco`` and ``annotation_problems``: the layout, the json schema and every annotation's geometry."""
from __future__ import annotations

import json
import math
import posixpath
from typing import Any, Iterable

import numpy as np

from .._check import Checker
from ..errors import ValidationReport
from .layout import COCO_2017, OBJECTS365_V2, SPLITS, TOLERANCE, CocoStyleLayout


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


Finding = tuple[str, str, str, str]  # (error code, message, fix, where inside the annotation)


def _segmentation_problems(seg: Any, width: int, height: int) -> list[Finding]:
    from pycocotools import mask as mask_utils  # pycocotools is imported where it is used: itpn.data, and so the pre-training, import without it

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


def _validate_split(chk: Checker, split: str, reference_classes: list[str] | None, layout: CocoStyleLayout
                    ) -> list[str] | None:
    rel = layout.annotation_file(split)
    if rel not in chk.files:
        chk.add("LayoutError", rel, "annotation file is missing",
                f"put {posixpath.basename(rel)} under {posixpath.dirname(rel)}/", severity="fatal")
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
    by_sample: dict[str, int] = {}  # the image file (relative to the root) of each record -> its id
    folder = layout.image_dir(split)
    for i, img in enumerate(document["images"]):
        record = f"images[{i}]" + (f" (id {img.get('id')})" if isinstance(img, dict) and "id" in img else "")
        if not isinstance(img, dict):
            chk.add("AnnotationSchemaError", rel, "image record must be an object", "fix the images list", record=record)
            continue
        sample = layout.image_path(split, img["file_name"]) if isinstance(img.get("file_name"), str) else None
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
        if sample in by_sample:  # two names in two folders that the layout puts in one place
            # the second record is the bad unit: the image and its first record stay
            chk.add("DuplicateError", rel, f"file_name {img['file_name']!r} is the file {sample} of image id "
                    f"{by_sample[sample]} as well", "list each image once", record=record, split=split)
            continue
        names[img["file_name"]] = img["id"]
        by_sample[sample] = img["id"]
        images[img["id"]] = img
        if sample not in chk.files:
            chk.add("LayoutError", sample, "image listed in the annotation file is missing",
                    f"copy it into {posixpath.dirname(sample)}/ or remove its record", record=f"{rel} {record}", sample=sample, split=split)

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

    to_decode = [layout.image_path(split, img["file_name"]) for img in images.values()]
    to_decode = [s for s in to_decode if s in chk.files and not chk.is_skipped(split, s)]
    good = 0
    annotations = 0
    for sample, decoded in chk.decode_images(to_decode, split):
        if decoded is None:
            continue
        img = images[by_sample[sample]]
        if (decoded.width, decoded.height) != (img["width"], img["height"]):
            chk.add("AnnotationSchemaError", rel, f"image {sample} is {decoded.width}x{decoded.height} but the record "
                    f"says {img['width']}x{img['height']}", "fix width/height in the record",
                    record=f"image id {img['id']}", sample=sample, split=split)
            continue
        good += 1
        annotations += per_image.get(img["id"], 0)
    listed = set(by_sample)
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


def validate_coco(url: str, *, strict: bool = False, workers: int | None = None,
                  layout: CocoStyleLayout = COCO_2017) -> ValidationReport:
    """Every check of a COCO-format data set (``layout``: COCO 2017 by default) in one report."""
    chk = Checker(layout.kind, url, workers)
    classes = _validate_split(chk, "train", None, layout)
    if classes is not None:
        chk.report.classes = classes
        _validate_split(chk, "val", classes, layout)
    images = [rel for split in SPLITS for rel in chk.under(layout.image_dir(split))]
    chk.report_duplicate_contents(images)
    return chk.finish(strict)


def validate_objects365(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    """Objects365 v2 (``OBJECTS365_V2``'s layout) checked exactly as COCO is: the same schema, box, polygon,
    category, duplicate and image checks, each bad record dropped on its own and counted."""
    return validate_coco(url, strict=strict, workers=workers, layout=OBJECTS365_V2)
