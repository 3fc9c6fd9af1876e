"""``generate_coco`` / ``generate_objects365``: a small COCO 2017 / Objects365 v2 in the real layout, shapes as
polygons (crowds as uncompressed RLE)."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import numpy as np

from .. import _render
from ...config import COUNT, FRACTION, NON_NEGATIVE, Range
from .._gen import CountRange, GeneratedData, ImageSize, Whole, check_arguments, empty_target, sample_rng
from ..classes import coco_categories, objects365_categories
from ..fs import join, write_bytes
from .layout import COCO_2017, OBJECTS365_V2, CocoStyleLayout, uncompressed_rle

# What each argument of the generator may be (flows.params checks a parameters file against the same).
ARGUMENTS = {"seed": Whole(NON_NEGATIVE), "num_classes": Whole(Range(1, 80)), "train_images": Whole(COUNT),
             "val_images": Whole(COUNT), "image_size": ImageSize(32), "objects_per_image": CountRange(),
             "crowd_fraction": FRACTION}
OBJECTS365_ARGUMENTS = {**ARGUMENTS, "num_classes": Whole(Range(1, 365))}


def generated_categories(num_classes: int, cats: tuple[tuple[int, str], ...] | None = None) -> list[tuple[int, str]]:
    """The categories the generator draws: ``num_classes`` of ``cats`` (COCO's 80 by default), spread over the
    id range."""
    cats = cats if cats is not None else coco_categories()
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
    return _generate(url, COCO_2017, coco_categories(), lambda split, image_id: f"{image_id:012d}.jpg", seed=seed,
                     num_classes=num_classes, counts=(train_images, val_images), image_size=image_size,
                     objects_per_image=objects_per_image, crowd_fraction=crowd_fraction, overwrite=overwrite)


def generate_objects365(
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
    """Write an Objects365 v2 stand-in, as ``generate_coco`` draws COCO: the json lists the 365 categories
    (ids 1..365), records name their images as the release does (``images/v2/patch<k>/objects365_v2_<id>.jpg``)
    and the files lie in two patch folders per split (``train/patch0/...``), as mmdet reads the release."""
    check_arguments(OBJECTS365_ARGUMENTS, seed=seed, num_classes=num_classes, train_images=train_images,
                    val_images=val_images, image_size=image_size, objects_per_image=objects_per_image,
                    crowd_fraction=crowd_fraction)

    def file_name(split: str, image_id: int) -> str:
        version = "v2" if split == "train" else "v1"
        return f"images/{version}/patch{image_id % 2}/objects365_{version}_{image_id:08d}.jpg"

    return _generate(url, OBJECTS365_V2, objects365_categories(), file_name, seed=seed, num_classes=num_classes,
                     counts=(train_images, val_images), image_size=image_size, objects_per_image=objects_per_image,
                     crowd_fraction=crowd_fraction, overwrite=overwrite)


def _generate(url: str, layout: CocoStyleLayout, all_categories: tuple[tuple[int, str], ...],
              file_name: Callable[[str, int], str], *, seed: int, num_classes: int, counts: tuple[int, int],
              image_size: int, objects_per_image: tuple[int, int], crowd_fraction: float,
              overwrite: bool) -> GeneratedData:
    lo, hi = objects_per_image
    start = time.perf_counter()
    params = dict(seed=seed, num_classes=num_classes, train_images=counts[0], val_images=counts[1],
                  image_size=image_size, objects_per_image=[lo, hi], crowd_fraction=crowd_fraction)
    used = generated_categories(num_classes, all_categories)
    fs, root = empty_target(url, overwrite)
    result = GeneratedData(kind=layout.kind, url=url, params=params)
    categories = [{"id": cat_id, "name": name, "supercategory": ""} for cat_id, name in all_categories]
    for split_index, (split, count) in enumerate(zip(("train", "val"), counts)):
        images, annotations = [], []
        for i in range(count):
            width, height, data, objects = _render_coco_image(
                seed, split_index, i, used, image_size, (lo, hi), crowd_fraction)
            image_id = i + 1
            name = file_name(split, image_id)
            rel = layout.image_path(split, name)
            write_bytes(fs, join(root, rel), data)
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            for obj in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["category_id"],
                    "bbox": obj["bbox"], "area": obj["area"], "iscrowd": obj["iscrowd"],
                    "segmentation": obj["segmentation"],
                })
            result.samples.append({"split": split, "file": rel, "image_id": image_id,
                                   "width": width, "height": height, "objects": objects})
        document = {
            "info": {"description": f"itpn generated {layout.kind} stand-in", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        write_bytes(fs, join(root, layout.annotation_file(split)), json.dumps(document).encode())
    result.seconds = time.perf_counter() - start
    return result
