"""The manifest: one JSON file at a prepared data set's root describing what is there.

It holds counts, classes, a content hash over every file (path + sha256, independent of where the data
lives), the source URL, the skipped samples and, for generated data, the generator and its parameters.
It is deterministic (no timestamps), so it can serve as the DVC output of the preparation stage.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ._check import MANIFEST_NAME
from .errors import ValidationReport
from .fs import join, open_fs, read_bytes

MANIFEST_VERSION = 1


def content_hash(file_hashes: dict[str, str]) -> str:
    """sha256 over the sorted ``relative path, file sha256`` pairs."""
    digest = hashlib.sha256()
    for rel in sorted(file_hashes):
        digest.update(f"{rel}\t{file_hashes[rel]}\n".encode())
    return "sha256:" + digest.hexdigest()


def build_manifest(report: ValidationReport, *, generator: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a validated data set (``dropped``: per split, what was left out at which level)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "kind": report.kind,
        "source_url": report.url,
        "classes": list(report.classes),
        "num_classes": len(report.classes),
        "counts": dict(sorted(report.counts.items())),
        "class_counts": report.class_counts,
        "files": len(report.file_hashes),
        "bytes": sum(report.file_sizes.values()),
        "content_hash": content_hash(report.file_hashes),
        "skipped": report.skipped_samples,
        "num_skipped": report.num_skipped,
        "dropped": report.dropped,
        "problems": {
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "by_code": dict(sorted(report.by_code().items())),
        },
        "generator": generator,
    }


def load_manifest(url: str) -> dict[str, Any] | None:
    """The manifest at the data set's root, or None when there is none."""
    fs, root = open_fs(url)
    path = join(root, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    return json.loads(read_bytes(fs, path))
