"""ADE20K (SceneParsing, ADEChallengeData2016): generator, validator and semantic-segmentation dataset.

Layout (``url`` holds ``ADEChallengeData2016/``, or is that folder itself)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png     (values 0..150, 0 = other)
    ADEChallengeData2016/images/validation/...  annotations/validation/...

With ``reduce_zero_label`` (the standard setting) value 0 becomes the ignore index 255 and v becomes v-1,
so labels index :data:`ADE20K_CLASSES`.
"""

from __future__ import annotations

import io
import posixpath
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from . import _render
from ._base import RobustDataset, resolve_skip
from ._check import Checker
from ._gen import GeneratedData, check_size, empty_target, sample_rng
from .classes import ADE20K_CLASSES, ADE20K_IGNORE_INDEX
from .errors import LayoutError, MaskValueError, ValidationReport
from .fs import display, join, list_files, open_fs, read_bytes, write_bytes

BASE = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
NUM_CLASSES = len(ADE20K_CLASSES)


def find_base(url: str) -> str:
    """The prefix (relative to ``url``) of the ``images/`` and ``annotations/`` folders."""
    fs, root = open_fs(url)
    return BASE if fs.exists(join(root, BASE)) else ""


def _rel(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if base else posixpath.join(*parts)


def clear_bad_values(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(mask with values above 150 set to 0, how many pixels that changed)``.

    A value outside 0..150 is the smallest bad unit of a mask: only those pixels become 0 ("other",
    which ``reduce_zero_label`` turns into the ignore index), the image and its other pixels stay.
    """
    bad = mask > NUM_CLASSES
    count = int(bad.sum())
    if count:
        mask = np.where(bad, 0, mask).astype(mask.dtype)
    return mask, count


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """0 → 255 (ignore), v → v - 1 for v in 1..150."""
    out = mask.astype(np.int64) - 1
    out[mask == 0] = ADE20K_IGNORE_INDEX
    return out


# ------------------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------------------
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
    check_size("image_size", image_size, 32)
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
            image_rel = _rel(BASE, "images", folder, f"{stem}.jpg")
            mask_rel = _rel(BASE, "annotations", folder, f"{stem}.png")
            write_bytes(fs, join(root, image_rel), _render.encode_image(canvas, "JPEG"))
            buffer = io.BytesIO()
            Image.fromarray(label).save(buffer, format="PNG")
            write_bytes(fs, join(root, mask_rel), buffer.getvalue())
            result.samples.append({"split": split, "file": image_rel, "mask_file": mask_rel, "mask": label})
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------------------
# dataset
# ------------------------------------------------------------------------------------------------------
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
        image_dir = _rel(base, "images", SPLITS[split])
        mask_dir = _rel(base, "annotations", SPLITS[split])
        images = {posixpath.splitext(r)[0]: r for r in list_files(self.fs, join(self.root, image_dir))}
        masks = {posixpath.splitext(r)[0]: r for r in list_files(self.fs, join(self.root, mask_dir))}
        if not images:
            raise LayoutError(f"no images for split {split!r}", file=display(url, image_dir),
                              fix=f"point the URL at the folder holding {BASE}/")
        self.dropped_pixels: dict[str, int] = {}  # mask file -> pixels set to 0
        exclude = resolve_skip(url, skip)
        self.samples: list[tuple[str, str]] = []
        for stem in sorted(images):
            image_rel = _rel(image_dir, images[stem])
            if stem in masks and image_rel not in exclude:
                self.samples.append((image_rel, _rel(mask_dir, masks[stem])))

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


# ------------------------------------------------------------------------------------------------------
# validator
# ------------------------------------------------------------------------------------------------------
def validate_ade20k(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("ade20k", url, workers)
    base = BASE if any(rel.startswith(BASE + "/") for rel in chk.files) else ""
    chk.report.classes = list(ADE20K_CLASSES)
    all_images: list[str] = []
    for split, folder in SPLITS.items():
        image_dir, mask_dir = _rel(base, "images", folder), _rel(base, "annotations", folder)
        for needed in (image_dir, mask_dir):
            if not chk.has_dir(needed):
                chk.add("LayoutError", needed, "folder is missing or empty",
                        f"put the {folder} {needed.split('/')[-2]} under {needed}/", severity="fatal")
        if not (chk.has_dir(image_dir) and chk.has_dir(mask_dir)):
            continue
        images = {posixpath.splitext(r[len(image_dir) + 1 :])[0]: r for r in chk.under(image_dir)}
        masks = {posixpath.splitext(r[len(mask_dir) + 1 :])[0]: r for r in chk.under(mask_dir)}
        for stem, rel in sorted(masks.items()):
            if stem not in images:
                chk.add("LayoutError", rel, "mask has no image and is ignored", "add the image or delete the mask",
                        severity="warning")
        pairs: dict[str, str] = {}
        for stem, rel in sorted(images.items()):
            if stem not in masks:
                chk.add("LayoutError", rel, "image has no annotation mask",
                        f"add {mask_dir}/{stem}.png or delete the image", sample=rel, split=split)
            else:
                pairs[rel] = masks[stem]
        image_of = {mask: image for image, mask in pairs.items()}
        sizes: dict[str, tuple[int, int]] = {}
        for rel, decoded in chk.decode_images(pairs, split):
            if decoded is not None:
                sizes[rel] = (decoded.width, decoded.height)
        per_class = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
        good = 0
        checked = [pairs[r] for r in sizes]
        fix = "fix or remove the mask"
        for mask_rel, decoded in chk.decode_images(checked, split, keep_pixels=True, sample_of=image_of.__getitem__):
            if decoded is None:
                continue
            image_rel = image_of[mask_rel]
            if decoded.mode not in ("L", "P"):
                chk.add("MaskValueError", mask_rel, f"mask mode is {decoded.mode}, a single-channel 8-bit PNG is needed",
                        "save the mask as mode L", sample=image_rel, split=split)
                continue
            if (decoded.width, decoded.height) != sizes[image_rel]:
                chk.add("MaskValueError", mask_rel, f"mask is {decoded.width}x{decoded.height} but the image is "
                        f"{sizes[image_rel][0]}x{sizes[image_rel][1]}", "use the mask that belongs to this image",
                        sample=image_rel, split=split)
                continue
            present = np.unique(decoded.pixels)
            bad = present[present > NUM_CLASSES]
            if bad.size:
                _, count = clear_bad_values(decoded.pixels)
                chk.add("MaskValueError", mask_rel, f"mask holds value(s) {bad.tolist()} outside 0..{NUM_CLASSES} "
                        f"in {count} pixel(s); they are set to 0 (other, ignored)", fix, split=split,
                        unit=("pixels", mask_rel), units=count)
                present = present[present <= NUM_CLASSES]
            per_class[present] += 1
            good += 1
        chk.report.counts[f"{split}/images"] = good
        chk.report.class_counts[split] = {ADE20K_CLASSES[v - 1]: int(per_class[v]) for v in range(1, NUM_CLASSES + 1) if per_class[v]}
        all_images.extend(pairs)
        if good == 0:
            chk.add("LayoutError", image_dir, f"split {split!r} has no usable image/mask pair",
                    "put images and masks in place", severity="fatal")
    chk.report_duplicate_contents(all_images)
    return chk.finish(strict)
