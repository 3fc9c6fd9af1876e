"""DOTA's layout and ``labelTxt`` format: parsing (``parse_label_text``, ``usable_objects``), writing an
object line (``format_object``) and pairing images with label files (``image_label_pairs``)."""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._check import IMAGE_EXTENSIONS
from ..classes import DOTA_CLASSES
from ..fs import join, list_files
from ..geometry import polygon_area


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


def file_stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def image_label_pairs(fs: Any, root: str, split: str) -> list[tuple[str, str | None]]:
    """``(image rel, label rel or None)`` for every image of the split, sorted."""
    images = [r for r in list_files(fs, join(root, split, "images")) if r.lower().endswith(IMAGE_EXTENSIONS)]
    labels = {file_stem(r): f"{split}/labelTxt/{r}" for r in list_files(fs, join(root, split, "labelTxt")) if r.endswith(".txt")}
    return [(f"{split}/images/{r}", labels.get(file_stem(r))) for r in sorted(images)]
