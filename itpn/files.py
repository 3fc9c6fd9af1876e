"""Run outputs (checkpoints, exports, metrics) at any fsspec URL: a plain path is the local disk."""
from __future__ import annotations

import os

import fsspec


def join_url(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def write_atomically(url: str, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``url``, then move it into place: a run killed while
    writing leaves the previous file whole (a rename on local disks)."""
    filesystem, path = fsspec.core.url_to_fs(url)
    filesystem.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp"
    with filesystem.open(temporary, "wb") as handle:
        handle.write(payload)
    filesystem.mv(temporary, path)
