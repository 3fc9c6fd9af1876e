"""fsspec helpers: every data-set location is a URL (a plain path means the local disk)."""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

_REMOTE_HINTS = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
}


def open_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem for ``url`` and the root path inside it (no trailing slash).

    Object-storage protocols need their fsspec package (``s3fs``, ``gcsfs``, ...); the error names it.
    """
    try:
        fs, root = url_to_fs(url)
    except (ImportError, ValueError) as exc:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        package = _REMOTE_HINTS.get(protocol)
        hint = f"install `{package}` into the environment" if package else "use a URL fsspec knows"
        raise ValueError(f"cannot open data-set URL {url!r}: {exc}. Fix: {hint}.") from exc
    return fs, root.rstrip("/") or "/"


def join(root: str, *parts: str) -> str:
    """Join path parts inside one filesystem (always ``/``-separated)."""
    return posixpath.join(root, *parts)


def display(url: str, rel: str) -> str:
    """The user-facing location of ``rel`` inside the data set at ``url``."""
    return f"{url.rstrip('/')}/{rel}" if rel else url


def list_files(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, int]:
    """All files under ``root`` as ``{relative path: size in bytes}`` (empty if ``root`` is absent)."""
    if not fs.exists(root):
        return {}
    found: dict[str, Any] = fs.find(root, detail=True)
    files: dict[str, int] = {}
    for path, info in found.items():
        if info.get("type", "file") != "file":
            continue
        rel = posixpath.relpath(fs._strip_protocol(path), root)
        files[rel] = int(info.get("size") or 0)
    return files


def list_dirs(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The folders directly inside ``root``, empty ones included (relative names, sorted)."""
    if not fs.exists(root):
        return []
    found = fs.ls(root, detail=True)
    return sorted(posixpath.basename(fs._strip_protocol(info["name"]).rstrip("/"))
                  for info in found if info.get("type") == "directory")


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path``, creating parent folders where the filesystem has them."""
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as handle:
        handle.write(data)


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    with fs.open(path, "rb") as handle:
        return handle.read()
