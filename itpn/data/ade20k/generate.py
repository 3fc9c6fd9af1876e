"""``generate_ade20k``: a small ADE20K in the real layout, textured regions and shapes with their label maps."""
from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from .. import _render
from ...config import COUNT, NON_NEGATIVE, Range
from .._gen import GeneratedData, ImageSize, Whole, check_arguments, empty_target, sample_rng
from ..fs import join, write_bytes
from .layout import BASE, NUM_CLASSES, SPLITS, rel_path

# What each argument of the generator may be (flows.params checks a parameters file against the same).
ARGUMENTS = {"seed": Whole(NON_NEGATIVE), "num_classes": Whole(Range(1, NUM_CLASSES)), "train_images": Whole(COUNT),
             "val_images": Whole(COUNT), "image_size": ImageSize(32)}


def generated_values(num_classes: int) -> list[int]:
    """The mask values (1..150) the generator draws, spread over the label space."""
    if not 1 <= num_classes <= NUM_CLASSES:
        raise ValueError(f"num_classes must be in 1..{NUM_CLASSES}, got {num_classes}")
    return [1 + (k * NUM_CLASSES) // num_classes for k in range(num_classes)]


def _render_scene(rng: np.random.Generator, size: int, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    height = width = size
    label = np.zeros((height, width), dtype=np.uint8)
    order = rng.permutation(len(values))
    top, bottom = int(order[0]), int(order[1 % len(values)])
    xs = np.arange(width)
    boundary = height * rng.uniform(0.35, 0.65) + height * 0.08 * np.sin(xs / width * 2 * np.pi * rng.uniform(0.5, 2) + rng.uniform(0, 6))
    rows = np.arange(height)[:, None]
    label[:] = np.where(rows < boundary[None, :], values[top], values[bottom])
    for cx, cy, radius in _render.place_without_overlap(rng, int(rng.integers(1, 4)), height, width, (0.1 * size, 0.22 * size)):
        k = int(rng.integers(0, len(values)))
        shape = _render.class_style(k).shape
        polygon = _render.shape_polygon(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        y0, x0, local = _render.rasterize_window(polygon, height, width)
        label[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]][local] = values[k]
    # an unlabelled ("other") patch, value 0, as real ADE20K masks have
    h0, w0 = int(rng.integers(size // 10, size // 5)), int(rng.integers(size // 10, size // 5))
    y, x = int(rng.integers(0, height - h0)), int(rng.integers(0, width - w0))
    label[y : y + h0, x : x + w0] = 0
    canvas = _render.background(height, width, rng, noise=20.0)
    for k, value in enumerate(values):
        region = label == value
        if region.any():
            _render.paint(canvas, 0, 0, region, _render.class_style(k), rng)
    return canvas, label


def generate_ade20k(
    url: str,
    *,
    seed: int = 0,
    num_classes: int = 5,
    train_images: int = 24,
    val_images: int = 8,
    image_size: int = 128,
    overwrite: bool = False,
) -> GeneratedData:
    """Write an ADE20K stand-in: the 150-class label space, ``num_classes`` classes drawn.

    Each image has two textured regions split by a wavy boundary, 1–3 shapes and an unlabelled (0)
    patch; every class has its own colour/texture, and the PNG mask is the exact label map painted.
    """
    check_arguments(ARGUMENTS, seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                    image_size=image_size)
    start = time.perf_counter()
    params = dict(seed=seed, num_classes=num_classes, train_images=train_images, val_images=val_images,
                  image_size=image_size)
    values = generated_values(num_classes)
    fs, root = empty_target(url, overwrite)
    result = GeneratedData(kind="ade20k", url=url, params=params)
    for split_index, (split, count) in enumerate((("train", train_images), ("val", val_images))):
        folder, prefix = SPLITS[split], f"ADE_{split}_"
        for i in range(count):
            canvas, label = _render_scene(sample_rng(seed, split_index, i), image_size, values)
            stem = f"{prefix}{i + 1:08d}"
            image_rel = rel_path(BASE, "images", folder, f"{stem}.jpg")
            mask_rel = rel_path(BASE, "annotations", folder, f"{stem}.png")
            write_bytes(fs, join(root, image_rel), _render.encode_image(canvas, "JPEG"))
            buffer = io.BytesIO()
            Image.fromarray(label).save(buffer, format="PNG")
            write_bytes(fs, join(root, mask_rel), buffer.getvalue())
            result.samples.append({"split": split, "file": image_rel, "mask_file": mask_rel, "mask": label})
    result.seconds = time.perf_counter() - start
    return result
