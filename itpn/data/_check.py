"""Shared machinery of the validators: file listing, hashing, parallel image decoding, problem records."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .errors import Problem, Severity, ValidationReport
from .fs import display, list_files, open_fs, read_bytes

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Decoded:
    """A fully decoded image: its size and, when asked for, its pixels."""

    width: int
    height: int
    mode: str
    pixels: np.ndarray | None = None


def decode_image(data: bytes, *, keep_pixels: bool = False) -> Decoded:
    """Decode every byte of an image; raises ``OSError``/``ValueError`` for truncated or corrupt data."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = np.asarray(image) if keep_pixels else None
            return Decoded(image.width, image.height, image.mode, pixels)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Checker:
    """Collects problems for one data set and remembers the hash of every file it reads."""

    def __init__(self, kind: str, url: str, workers: int | None = None) -> None:
        self.kind = kind
        self.url = url
        self.fs, self.root = open_fs(url)
        self.files = {rel: size for rel, size in list_files(self.fs, self.root).items() if rel != MANIFEST_NAME}
        self.workers = workers or default_workers()
        self.report = ValidationReport(kind=kind, url=url)
        self._skipped: dict[str, set[str]] = defaultdict(set)
        self._dropped: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))

    # -- problems --------------------------------------------------------------------------------------
    def add(
        self,
        code: str,
        rel: str,
        message: str,
        fix: str,
        *,
        record: str | None = None,
        severity: Severity = "error",
        sample: str | None = None,
        split: str | None = None,
        unit: tuple[str, str] | None = None,
        units: int = 1,
    ) -> None:
        """Record one problem. An error with ``sample`` skips that sample (its image); an error with
        ``unit = (level, key)`` drops only that unit (``("annotations", "annotation id 7")``,
        ``("lines", "<file> line 3")``, ``("pixels", "<mask>")``: ``units`` of them), never its image."""
        skipped = sample if severity == "error" and unit is None else None
        level = unit[0] if unit is not None and severity == "error" else ("images" if skipped else None)
        self.report.problems.append(
            Problem(code, severity, display(self.url, rel), message, fix, record=record, sample=skipped, dropped=level)
        )
        if skipped is not None:
            self._skipped[split or "all"].add(skipped)
        elif unit is not None and severity == "error":
            found = self._dropped[split or "all"][unit[0]]
            found[unit[1]] = max(found.get(unit[1], 0), units)

    def is_skipped(self, split: str, sample: str) -> bool:
        return sample in self._skipped.get(split, ())

    def under(self, prefix: str) -> list[str]:
        """Relative paths of the files below folder ``prefix``."""
        prefix = prefix.rstrip("/") + "/"
        return sorted(rel for rel in self.files if rel.startswith(prefix))

    def has_dir(self, prefix: str) -> bool:
        return bool(self.under(prefix))

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, rel: str) -> bytes:
        data = read_bytes(self.fs, f"{self.root}/{rel}")
        self.report.file_hashes[rel] = hashlib.sha256(data).hexdigest()
        return data

    def decode_images(
        self,
        rels: Iterable[str],
        split: str,
        *,
        keep_pixels: bool = False,
        sample_of: Callable[[str], str] | None = None,
    ) -> Iterator[tuple[str, Decoded | None]]:
        """Read and decode images in parallel; yields ``(rel, decoded)`` with None for bad ones (reported).

        ``sample_of`` maps a file to the sample skipped when it is bad (default: the file itself).
        """
        rels = list(rels)
        key = sample_of or (lambda rel: rel)

        def work(rel: str) -> tuple[str, str | None, int, Decoded | BaseException | None]:
            try:
                data = read_bytes(self.fs, f"{self.root}/{rel}")
            except OSError as exc:
                return rel, None, 0, exc
            digest = hashlib.sha256(data).hexdigest()
            if not data:
                return rel, digest, 0, None
            try:
                return rel, digest, len(data), decode_image(data, keep_pixels=keep_pixels)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
                return rel, digest, len(data), exc

        chunk = 32 * self.workers  # bounds how many decoded results wait in memory
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for first in range(0, len(rels), chunk):
                for rel, digest, size, result in pool.map(work, rels[first : first + chunk]):
                    if digest is not None:
                        self.report.file_hashes[rel] = digest
                    if digest is None:
                        self.add("LayoutError", rel, f"cannot be read: {result}", "check the path and access rights",
                                 sample=key(rel), split=split)
                        yield rel, None
                    elif size == 0:
                        self.add("EmptyFileError", rel, "image file is empty (0 bytes)",
                                 "re-copy or re-download this file, or delete it", sample=key(rel), split=split)
                        yield rel, None
                    elif isinstance(result, BaseException):
                        self.add("CorruptImageError", rel, f"image cannot be decoded: {result}",
                                 "re-copy or re-download this file, or delete it", sample=key(rel), split=split)
                        yield rel, None
                    else:
                        assert isinstance(result, Decoded)
                        yield rel, result

    # -- duplicates and completion ---------------------------------------------------------------------
    def report_duplicate_contents(self, rels: Iterable[str]) -> None:
        """Warn about files among ``rels`` whose bytes are identical (e.g. the same image in two classes)."""
        seen: dict[str, str] = {}
        for rel in sorted(rels):
            digest = self.report.file_hashes.get(rel)
            if digest is None or self.files.get(rel, 0) == 0:
                continue
            if digest in seen:
                self.add("DuplicateError", rel, f"same content as {display(self.url, seen[digest])}",
                         "remove one copy unless the duplicate is intended", severity="warning")
            else:
                seen[digest] = rel

    def finish(self, strict: bool) -> ValidationReport:
        """Hash the files not read yet, fill the skip lists and raise as the mode asks."""
        for rel in sorted(self.files):
            if rel not in self.report.file_hashes:
                self.read(rel)
        self.report.file_sizes = dict(self.files)
        self.report.skipped = {split: sorted(keys) for split, keys in sorted(self._skipped.items())}
        dropped: dict[str, dict[str, int]] = defaultdict(dict)
        for split, keys in self._skipped.items():
            for key in keys:
                level = "shards" if self.kind == "imagenet_tar" and ":" not in key else "images"
                dropped[split][level] = dropped[split].get(level, 0) + 1
        for split, levels in self._dropped.items():
            for level, units in levels.items():
                dropped[split][level] = dropped[split].get(level, 0) + sum(units.values())
        self.report.dropped = {split: dict(sorted(levels.items())) for split, levels in sorted(dropped.items())}
        self.report.raise_if_failed(strict)
        return self.report
