"""DOTA v1.0: generator, validator, oriented-object dataset, 1024×1024 patch split and detection merge.

Layout (``url``)::

    train/images/P0000.png        train/labelTxt/P0000.txt
    val/images/...                val/labelTxt/...
    test/images/...               (optional, no labels)

A ``labelTxt`` file may start with ``imagesource:`` and ``gsd:`` lines; every other non-empty line is
``x1 y1 x2 y2 x3 y3 x4 y4 class-name difficulty`` (difficulty 0/1; the patch split writes 2 for objects
cut by the patch border, as the DOTA devkit does).

Large images are cut into overlapping ``patch_size`` windows (:func:`split_dota`, the standard
1024/200 setting by default) named ``<image>__<patch_size>__<x>___<y>``; detections on patches are
shifted back and merged per class with polygon NMS (:func:`merge_dota_detections`).
"""

from __future__ import annotations

import io
import posixpath
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from . import _render
from ._base import RobustDataset, resolve_skip
from ._check import IMAGE_EXTENSIONS, Checker
from ._gen import GeneratedData, check_size, empty_target, sample_rng
from .classes import DOTA_CLASSES
from .errors import LayoutError, ValidationReport
from .fs import display, join, list_files, open_fs, read_bytes, write_bytes
from .geometry import clip_polygon, min_area_rect, poly_nms, polygon_area, rectangle

SPLITS = ("train", "val", "test")
LABELLED_SPLITS = ("train", "val")
HEADER_KEYS = ("imagesource:", "gsd:")
TOLERANCE = 2.0  # pixels a polygon point may lie outside its image
PATCH_NAME = re.compile(r"^(?P<image>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)$")


@dataclass(frozen=True)
class DotaObject:
    polygon: np.ndarray  # (8,) x1 y1 ... x4 y4
    name: str
    difficulty: int
    line: int


@dataclass(frozen=True)
class LineProblem:
    line: int
    code: str
    message: str
    fix: str


def parse_label_text(text: str) -> tuple[list[str], list[DotaObject], list[LineProblem]]:
    """Parse a ``labelTxt`` file into its header lines, objects and per-line problems."""
    header: list[str] = []
    objects: list[DotaObject] = []
    problems: list[LineProblem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(HEADER_KEYS):
            header.append(line)
            continue
        tokens = line.split()
        coords: list[float] = []
        for token in tokens:
            try:
                coords.append(float(token))
            except ValueError:
                break
        rest = tokens[len(coords) :]
        if len(coords) != 8 or len(rest) not in (1, 2):
            problems.append(LineProblem(number, "DotaLineError",
                                        f"expected 8 coordinates, a class name and a difficulty, found {len(coords)} "
                                        f"coordinate(s) and {len(rest)} other token(s): {line!r}",
                                        "write 'x1 y1 x2 y2 x3 y3 x4 y4 class difficulty'"))
            continue
        if not np.all(np.isfinite(coords)):
            problems.append(LineProblem(number, "DotaLineError", f"coordinates must be finite: {line!r}",
                                        "fix the coordinates"))
            continue
        name = rest[0]
        difficulty = 0
        if len(rest) == 2:
            if rest[1] not in ("0", "1", "2"):
                problems.append(LineProblem(number, "DotaLineError", f"difficulty must be 0, 1 or 2, got {rest[1]!r}",
                                            "use 0 (easy) or 1 (difficult)"))
                continue
            difficulty = int(rest[1])
        if name not in DOTA_CLASSES:
            problems.append(LineProblem(number, "UnknownClassError", f"unknown class name {name!r}",
                                        f"use one of the 15 DOTA v1.0 classes: {', '.join(DOTA_CLASSES)}"))
            continue
        objects.append(DotaObject(np.array(coords, dtype=np.float64), name, difficulty, number))
    return header, objects, problems


def usable_objects(text: str, width: int | None = None, height: int | None = None
                   ) -> tuple[list[str], list[DotaObject], list[LineProblem]]:
    """:func:`parse_label_text` plus the geometry checks: ``(header, objects kept, problems of dropped lines)``.

    A line is dropped on its own (its image and the other lines stay) when it does not parse, names an
    unknown class, or its polygon has zero area or (with the image's ``width``/``height``) reaches more
    than ``TOLERANCE`` pixels outside the image. Validation, :class:`DOTADataset`, :func:`split_dota` and
    the mmrotate reader share this rule.
    """
    header, parsed, problems = parse_label_text(text)
    problems = list(problems)
    objects: list[DotaObject] = []
    for obj in parsed:
        corners = obj.polygon.reshape(4, 2)
        lo, hi = corners.min(0), corners.max(0)
        if polygon_area(corners) <= 0:
            problems.append(LineProblem(obj.line, "PolygonError", "polygon has zero area", "fix the corner coordinates"))
        elif width is not None and height is not None and (
                lo.min() < -TOLERANCE or hi[0] > width + TOLERANCE or hi[1] > height + TOLERANCE):
            problems.append(LineProblem(obj.line, "PolygonError", f"polygon reaches outside the {width}x{height} image "
                                        f"(x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f})",
                                        "clip the polygon to the image or fix its coordinates"))
        else:
            objects.append(obj)
    problems.sort(key=lambda p: p.line)
    return header, objects, problems


def format_object(polygon: np.ndarray, name: str, difficulty: int, decimals: int = 1) -> str:
    coords = " ".join(f"{v:.{decimals}f}" for v in np.asarray(polygon).ravel())
    return f"{coords} {name} {difficulty}"


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


# ------------------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------------------
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
    check_size("image_size", image_size, 64)
    lo, hi = objects_per_image
    if not 0 <= lo <= hi:
        raise ValueError(f"objects_per_image must be (min, max) with 0 <= min <= max, got {objects_per_image}")
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


# ------------------------------------------------------------------------------------------------------
# dataset
# ------------------------------------------------------------------------------------------------------
def _pairs(fs: Any, root: str, split: str) -> list[tuple[str, str | None]]:
    """``(image rel, label rel or None)`` for every image of the split, sorted."""
    images = [r for r in list_files(fs, join(root, split, "images")) if r.lower().endswith(IMAGE_EXTENSIONS)]
    labels = {_stem(r): f"{split}/labelTxt/{r}" for r in list_files(fs, join(root, split, "labelTxt")) if r.endswith(".txt")}
    return [(f"{split}/images/{r}", labels.get(_stem(r))) for r in sorted(images)]


class DOTADataset(RobustDataset):
    """DOTA images with oriented boxes as ``(image, target)`` for torchvision v2 transforms.

    ``target``: ``boxes`` (``BoundingBoxes`` in ``XYXYXYXY`` format, the 4 corners), ``labels`` (index in
    :data:`DOTA_CLASSES`), ``difficulty``, ``image_name``. Convert to ``CXCYWHR`` with
    ``torchvision.transforms.v2.functional.convert_bounding_box_format`` where a head needs it.
    Works on full images and on the patches written by :func:`split_dota` (same layout). A bad label
    line (:func:`usable_objects`) is dropped on its own and counted in ``dropped_lines``
    (``(label file, line number)``); the image keeps its other objects.
    """

    classes = list(DOTA_CLASSES)

    def __init__(
        self,
        url: str,
        split: str = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        include_difficult: bool = True,
        filter_empty: bool = False,
        skip: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transforms = transforms
        self.include_difficult = include_difficult
        pairs = _pairs(self.fs, self.root, split)
        if not pairs:
            raise LayoutError(f"no images for split {split!r}", file=display(url, f"{split}/images"),
                              fix="point the URL at the folder holding train/images and train/labelTxt")
        self.dropped_lines: set[tuple[str, int]] = set()
        exclude = resolve_skip(url, skip)
        self.samples = [(image, label) for image, label in pairs if image not in exclude]
        if split in LABELLED_SPLITS:
            self.samples = [(image, label) for image, label in self.samples if label is not None]
        if filter_empty:
            self.samples = [s for s in self.samples if s[1] is not None and self._objects(s[1])]

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        return self.samples[index][0]

    def _objects(self, label_rel: str, width: int | None = None, height: int | None = None) -> list[DotaObject]:
        text = read_bytes(self.fs, self.path(label_rel)).decode()
        _, objects, problems = usable_objects(text, width, height)
        self.dropped_lines.update((label_rel, p.line) for p in problems)
        return [o for o in objects if self.include_difficult or o.difficulty != 1]

    def _load(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_rel, label_rel = self.samples[index]
        with Image.open(io.BytesIO(read_bytes(self.fs, self.path(image_rel)))) as pil:
            pixels = np.array(pil.convert("RGB"))
        height, width = pixels.shape[:2]
        objects = self._objects(label_rel, width, height) if label_rel else []
        polys = np.array([o.polygon for o in objects], dtype=np.float32).reshape(-1, 8)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(polys), format="XYXYXYXY", canvas_size=(height, width)),
            "labels": torch.tensor([DOTA_CLASSES.index(o.name) for o in objects], dtype=torch.int64),
            "difficulty": torch.tensor([o.difficulty for o in objects], dtype=torch.int64),
            "image_name": _stem(image_rel),
        }
        return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous()), target

    def _finish(self, sample: tuple[tv_tensors.Image, dict[str, Any]]) -> Any:
        return self.transforms(*sample) if self.transforms else sample


# ------------------------------------------------------------------------------------------------------
# split into patches and merge detections back
# ------------------------------------------------------------------------------------------------------
def window_starts(length: int, patch_size: int, gap: int) -> list[int]:
    """Start offsets of overlapping windows covering ``length`` (the last one flush with the end)."""
    step = patch_size - gap
    if step <= 0:
        raise ValueError(f"gap ({gap}) must be smaller than patch_size ({patch_size})")
    starts = list(range(0, max(length - patch_size, 0) + 1, step))
    if starts[-1] + patch_size < length:
        starts.append(length - patch_size)
    return starts


def patch_name(image: str, patch_size: int, x: int, y: int) -> str:
    return f"{image}__{patch_size}__{x}___{y}"


def parse_patch_name(name: str) -> tuple[str, int, int]:
    """``(original image name, x offset, y offset)`` of a patch written by :func:`split_dota`."""
    match = PATCH_NAME.match(_stem(name))
    if not match:
        raise ValueError(f"{name!r} is not a patch name '<image>__<size>__<x>___<y>' written by split_dota()")
    return match["image"], int(match["x"]), int(match["y"])


def split_dota(
    src_url: str,
    dst_url: str,
    *,
    patch_size: int = 1024,
    gap: int = 200,
    iof_thr: float = 0.7,
    splits: Iterable[str] = LABELLED_SPLITS,
    skip: Iterable[str] | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Cut every image into ``patch_size`` windows overlapping by ``gap`` and write them in the DOTA layout.

    Windows are padded with zeros to ``patch_size``. An object goes to a patch when at least ``iof_thr``
    of its area lies inside: whole objects are shifted exactly, cut ones are replaced by the
    minimum-area rectangle of their visible part and get difficulty 2. Images in ``skip`` (default: the
    source manifest's skipped list) are left out, and so are bad label lines (:func:`usable_objects`;
    their image stays). Returns per split the numbers of images, patches, objects written and label
    lines dropped.
    """
    src_fs, src_root = open_fs(src_url)
    dst_fs, dst_root = empty_target(dst_url, overwrite)
    exclude = resolve_skip(src_url, skip)
    summary: dict[str, dict[str, int]] = {}
    for split in splits:
        stats = {"images": 0, "patches": 0, "objects": 0, "dropped_lines": 0}
        for image_rel, label_rel in _pairs(src_fs, src_root, split):
            if image_rel in exclude or (split in LABELLED_SPLITS and label_rel is None):
                continue
            with Image.open(io.BytesIO(read_bytes(src_fs, join(src_root, image_rel)))) as pil:
                pixels = np.array(pil.convert("RGB"))
            header: list[str] = []
            objects: list[DotaObject] = []
            height, width = pixels.shape[:2]
            if label_rel is not None:
                text = read_bytes(src_fs, join(src_root, label_rel)).decode()
                header, objects, problems = usable_objects(text, width, height)
                stats["dropped_lines"] += len(problems)
            stem = _stem(image_rel)
            for y in window_starts(height, patch_size, gap):
                for x in window_starts(width, patch_size, gap):
                    patch = np.zeros((patch_size, patch_size, 3), dtype=np.uint8)
                    crop = pixels[y : y + patch_size, x : x + patch_size]
                    patch[: crop.shape[0], : crop.shape[1]] = crop
                    window = rectangle(x, y, x + patch_size, y + patch_size)
                    lines = list(header)
                    for obj in objects:
                        corners = obj.polygon.reshape(4, 2)
                        area = polygon_area(corners)
                        inside = clip_polygon(corners, window)
                        iof = polygon_area(inside) / area if area > 0 else 0.0
                        if iof >= 1.0 - 1e-9:
                            lines.append(format_object(corners - (x, y), obj.name, obj.difficulty, 2))
                        elif iof >= iof_thr:
                            cut = np.clip(min_area_rect(inside) - (x, y), 0, patch_size)
                            lines.append(format_object(cut, obj.name, 2, 2))
                        else:
                            continue
                        stats["objects"] += 1
                    name = patch_name(stem, patch_size, x, y)
                    write_bytes(dst_fs, join(dst_root, split, "images", f"{name}.png"), _render.encode_image(patch, "PNG"))
                    if label_rel is not None:
                        text = "\n".join(lines) + ("\n" if lines else "")
                        write_bytes(dst_fs, join(dst_root, split, "labelTxt", f"{name}.txt"), text.encode())
                    stats["patches"] += 1
            stats["images"] += 1
        summary[split] = stats
    return summary


def merge_dota_detections(
    detections: Mapping[str, Mapping[str, Any]],
    *,
    iou_thr: float = 0.1,
) -> dict[str, dict[str, np.ndarray]]:
    """Shift patch detections back to their full images and merge them per class with polygon NMS.

    ``detections`` maps a patch name (or file name) to ``{"polys": (N, 8), "scores": (N,), "labels": (N,)}``
    (numpy arrays or tensors) in patch pixels. Returns, per original image, the same keys in image pixels,
    sorted by descending score. Every image with at least one patch appears, even without detections.
    """
    grouped: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for name, det in detections.items():
        image, x, y = parse_patch_name(name)
        polys = np.asarray(det["polys"], dtype=np.float64).reshape(-1, 8)
        scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1)
        labels = np.asarray(det["labels"], dtype=np.int64).reshape(-1)
        if not len(polys) == len(scores) == len(labels):
            raise ValueError(f"detections for {name!r}: polys, scores and labels differ in length")
        grouped.setdefault(image, []).append((polys + np.tile([x, y], 4), scores, labels))
    merged: dict[str, dict[str, np.ndarray]] = {}
    for image, parts in sorted(grouped.items()):
        polys = np.concatenate([p[0] for p in parts]).reshape(-1, 8)
        scores = np.concatenate([p[1] for p in parts])
        labels = np.concatenate([p[2] for p in parts])
        keep: list[np.ndarray] = []
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            keep.append(idx[poly_nms(polys[idx], scores[idx], iou_thr)])
        kept = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
        kept = kept[np.argsort(-scores[kept], kind="stable")]
        merged[image] = {"polys": polys[kept], "scores": scores[kept], "labels": labels[kept]}
    return merged


def write_dota_task1(merged: Mapping[str, Mapping[str, np.ndarray]], url: str) -> list[str]:
    """Write merged detections as the DOTA Task 1 submission files ``Task1_<class>.txt``; returns their URLs."""
    fs, root = open_fs(url)
    lines: dict[str, list[str]] = {name: [] for name in DOTA_CLASSES}
    for image, det in sorted(merged.items()):
        for poly, score, label in zip(det["polys"], det["scores"], det["labels"]):
            coords = " ".join(f"{v:.1f}" for v in np.asarray(poly).ravel())
            lines[DOTA_CLASSES[int(label)]].append(f"{image} {float(score):.4f} {coords}")
    written = []
    for name, rows in lines.items():
        rel = f"Task1_{name}.txt"
        write_bytes(fs, join(root, rel), ("\n".join(rows) + ("\n" if rows else "")).encode())
        written.append(display(url, rel))
    return written


# ------------------------------------------------------------------------------------------------------
# validator
# ------------------------------------------------------------------------------------------------------
def validate_dota(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("dota", url, workers)
    chk.report.classes = list(DOTA_CLASSES)
    all_images: list[str] = []
    if not chk.has_dir("train/images"):
        chk.add("LayoutError", "train/images", "folder is missing or empty", "put the training PNGs under train/images/",
                severity="fatal")
    for split in SPLITS:
        image_dir, label_dir = f"{split}/images", f"{split}/labelTxt"
        if not chk.has_dir(image_dir):
            if split == "val" and chk.has_dir(label_dir):
                chk.add("LayoutError", image_dir, "folder is missing or empty", "put the images next to labelTxt/",
                        severity="fatal")
            continue
        labelled = split in LABELLED_SPLITS
        if labelled and not chk.has_dir(label_dir):
            chk.add("LayoutError", label_dir, "folder is missing or empty", f"put the label files under {label_dir}/",
                    severity="fatal")
            continue
        images = {_stem(r): r for r in chk.under(image_dir) if r.lower().endswith(IMAGE_EXTENSIONS)}
        labels = {_stem(r): r for r in chk.under(label_dir) if r.endswith(".txt")}
        for stem, rel in sorted(labels.items()):
            if stem not in images:
                chk.add("LayoutError", rel, "label file has no image and is ignored", "add the image or delete the file",
                        severity="warning")
        to_decode = []
        for stem, rel in sorted(images.items()):
            if labelled and stem not in labels:
                chk.add("LayoutError", rel, "image has no labelTxt file", f"add {label_dir}/{stem}.txt or delete the image",
                        sample=rel, split=split)
            else:
                to_decode.append(rel)
        per_class = {name: 0 for name in DOTA_CLASSES}
        good = objects_total = 0
        for rel, decoded in chk.decode_images(to_decode, split):
            if decoded is None:
                continue
            if not labelled:
                good += 1
                continue
            label_rel = labels[_stem(rel)]
            data = chk.read(label_rel)
            if not data:
                chk.add("EmptyFileError", label_rel, "label file is empty (0 bytes); the image counts as having no objects",
                        "write the 'imagesource:'/'gsd:' header even for images without objects", severity="warning")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                chk.add("DotaLineError", label_rel, f"not UTF-8 text: {exc}", "re-copy the file", sample=rel, split=split)
                continue
            _, objects, problems = usable_objects(text, decoded.width, decoded.height)
            for p in problems:
                chk.add(p.code, label_rel, p.message, p.fix, record=f"line {p.line}", split=split,
                        unit=("lines", f"{label_rel} line {p.line}"))
            seen: dict[tuple, int] = {}
            for obj in objects:
                key = (tuple(obj.polygon.tolist()), obj.name)
                if key in seen:
                    chk.add("DuplicateError", label_rel, f"same object as line {seen[key]}", "delete one of the lines",
                            record=f"line {obj.line}", severity="warning")
                seen.setdefault(key, obj.line)
            good += 1
            objects_total += len(objects)
            for obj in objects:
                per_class[obj.name] += 1
        chk.report.counts[f"{split}/images"] = good
        if labelled:
            chk.report.counts[f"{split}/objects"] = objects_total
            chk.report.class_counts[split] = per_class
        all_images.extend(images.values())
        if good == 0:
            chk.add("LayoutError", image_dir, f"split {split!r} has no usable image", "put images and labels in place",
                    severity="fatal")
    chk.report_duplicate_contents(all_images)
    return chk.finish(strict)
