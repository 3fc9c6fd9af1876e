"""DOTA's patch split and merge: ``split_dota`` cuts images into overlapping ``patch_size`` windows named
``<image>__<patch_size>__<x>___<y>``; ``merge_dota_detections`` shifts patch detections back and merges
them per class with polygon NMS; ``write_dota_task1`` writes them in DOTA's Task1 submission format."""
from __future__ import annotations

import io
from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image

from .. import _render
from .._base import resolve_skip
from .._gen import empty_target
from ..classes import DOTA_CLASSES
from ..fs import display, join, open_fs, read_bytes, write_bytes
from ..geometry import clip_polygon, min_area_rect, poly_nms, polygon_area, rectangle
from .layout import DotaObject, LABELLED_SPLITS, PATCH_NAME, file_stem, format_object, image_label_pairs, usable_objects


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
    match = PATCH_NAME.match(file_stem(name))
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
        for image_rel, label_rel in image_label_pairs(src_fs, src_root, split):
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
            stem = file_stem(image_rel)
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
