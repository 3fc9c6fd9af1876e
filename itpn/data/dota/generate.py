"""``generate_dota``: a small DOTA v1.0 in the real layout, large images of oriented rectangles."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import _render
from ...config import COUNT, NON_NEGATIVE, POSITIVE, Range
from .._gen import CountRange, GeneratedData, ImageSize, Whole, check_arguments, empty_target, sample_rng
from ..classes import DOTA_CLASSES
from ..fs import join, write_bytes
from .layout import format_object

# What each argument of the generator may be (flows.params checks a parameters file against the same).
ARGUMENTS = {"seed": Whole(NON_NEGATIVE), "num_classes": Whole(Range(1, len(DOTA_CLASSES))),
             "train_images": Whole(COUNT), "val_images": Whole(COUNT), "image_size": ImageSize(64),
             "objects_per_image": CountRange(), "object_scale": POSITIVE}


def generated_classes(num_classes: int) -> list[str]:
    if not 1 <= num_classes <= len(DOTA_CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(DOTA_CLASSES)}, got {num_classes}")
    return [DOTA_CLASSES[(k * len(DOTA_CLASSES)) // num_classes] for k in range(num_classes)]


def _object_geometry(k: int, scale: float) -> tuple[float, float]:
    """Class ``k``'s rectangle length and width (before the per-object ±15 % jitter)."""
    length = (26.0 + 12.0 * (k % 5)) * scale
    aspect = (0.35, 0.9, 0.55, 0.7, 0.45)[(k // 5 + k) % 5]
    return length, length * aspect


def _render_dota_image(
    rng: np.random.Generator, image_size: int, names: list[str], objects_per_image: tuple[int, int], object_scale: float,
) -> tuple[int, int, bytes, list[dict[str, Any]]]:
    choices = np.arange(image_size * 3 // 4 // 16, image_size // 16 + 1) * 16
    width, height = int(rng.choice(choices)), int(rng.choice(choices))
    canvas = _render.background(height, width, rng)
    count = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    labels = rng.integers(0, len(names), count)
    max_r = max(np.hypot(*_object_geometry(k, object_scale)) / 2 * 1.15 for k in range(len(names)))
    circles = _render.place_without_overlap(rng, count, height, width, (max_r, max_r))
    objects = []
    for (cx, cy, _), k in zip(circles, labels):
        length, breadth = _object_geometry(int(k), object_scale)
        jitter = rng.uniform(0.85, 1.15)
        corners = _render.rotated_rectangle(cx, cy, length * jitter, breadth * jitter, rng.uniform(0, np.pi))
        corners = np.round(corners, 1)
        y0, x0, local = _render.rasterize_window(corners, height, width)
        _render.paint(canvas, y0, x0, local, _render.class_style(int(k)), rng)
        difficulty = int(rng.random() < 0.1)
        objects.append({"polygon": corners.ravel().tolist(), "name": names[int(k)], "difficulty": difficulty})
    return width, height, _render.encode_image(canvas, "PNG"), objects


def generate_dota(
    url: str,
    *,
    seed: int = 0,
    num_classes: int = 5,
    train_images: int = 3,
    val_images: int = 1,
    image_size: int = 1280,
    objects_per_image: tuple[int, int] = (24, 40),
    object_scale: float = 1.0,
    overwrite: bool = False,
) -> GeneratedData:
    """Write a DOTA v1.0 stand-in: large PNGs (sides ¾·image_size..image_size) with oriented rectangles.

    Each drawn class (``num_classes`` of the 15) has its own size, aspect ratio, colour and texture;
    ~10 % of objects are marked difficult. ``object_scale`` scales all objects (use < 1 with small images).
    """
    check_arguments(ARGUMENTS, seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                    image_size=image_size, objects_per_image=objects_per_image, object_scale=object_scale)
    lo, hi = objects_per_image
    start = time.perf_counter()
    params = dict(seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                  image_size=image_size, objects_per_image=[lo, hi], object_scale=object_scale)
    names = generated_classes(num_classes)
    fs, root = empty_target(url, overwrite)
    result = GeneratedData(kind="dota", url=url, params=params)
    for split_index, (split, count) in enumerate((("train", train_images), ("val", val_images))):
        for i in range(count):
            width, height, data, objects = _render_dota_image(
                sample_rng(seed, split_index, i), image_size, names, (lo, hi), object_scale)
            stem = f"P{split_index * 5000 + i:04d}"
            image_rel, label_rel = f"{split}/images/{stem}.png", f"{split}/labelTxt/{stem}.txt"
            write_bytes(fs, join(root, image_rel), data)
            lines = ["imagesource:itpn-generated", "gsd:0.5"]
            lines += [format_object(np.array(o["polygon"]), o["name"], o["difficulty"]) for o in objects]
            write_bytes(fs, join(root, label_rel), ("\n".join(lines) + "\n").encode())
            result.samples.append({"split": split, "file": image_rel, "label_file": label_rel,
                                   "width": width, "height": height, "objects": objects})
    result.seconds = time.perf_counter() - start
    return result
