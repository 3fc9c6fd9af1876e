"""``generate_coco``: a small COCO 2017 in the real layout, shapes as polygons (crowds as uncompressed RLE)."""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from .. import _render
from ...config import COUNT, FRACTION, NON_NEGATIVE, Range
from .._gen import CountRange, GeneratedData, ImageSize, Whole, check_arguments, empty_target, sample_rng
from ..classes import coco_categories
from ..fs import join, write_bytes
from .layout import annotation_file, image_dir, uncompressed_rle

# What each argument of the generator may be (flows.params checks a parameters file against the same).
ARGUMENTS = {"seed": Whole(NON_NEGATIVE), "num_classes": Whole(Range(1, 80)), "train_images": Whole(COUNT),
             "val_images": Whole(COUNT), "image_size": ImageSize(32), "objects_per_image": CountRange(),
             "crowd_fraction": FRACTION}


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
    from pycocotools import mask as mask_utils  # pycocotools is imported where it is used: itpn.data, and so the pre-training, import without it

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
    check_arguments(ARGUMENTS, seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                    image_size=image_size, objects_per_image=objects_per_image, crowd_fraction=crowd_fraction)
    lo, hi = objects_per_image
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
