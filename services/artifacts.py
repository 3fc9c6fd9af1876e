"""Artifact storage behind fsspec: put, get and check files by URL, with their sha256.

A URL is anything fsspec opens (a local path, ``file://``, ``memory://``, ``s3://`` ...).
``artifact_url(key)`` places a key under the configured root (``services.settings``), so
the flows name artifacts by key and the store records the full URL and its hash.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

from services import settings

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact was written, its content hash and its size."""

    url: str
    sha256: str
    size_bytes: int


def artifact_url(key: str, root: str | None = None) -> str:
    """The URL of ``key`` (a relative, '/'-separated name) under ``root`` or the configured root."""
    parts = [part for part in key.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"artifact key {key!r} must be a relative name without '.' or '..' parts")
    base = (root if root is not None else settings.artifacts_url()).rstrip("/")
    return "/".join([base, *parts])


def put(src: str | Path, url: str) -> StoredArtifact:
    """Copy the local file ``src`` to ``url``, hashing it on the way."""
    src_path = Path(src)
    if not src_path.is_file():
        raise FileNotFoundError(f"artifact source {src_path} is not a file")
    fs, path = url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with src_path.open("rb") as reader, fs.open(path, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    return StoredArtifact(url=url, sha256=digest.hexdigest(), size_bytes=size)


def put_bytes(data: bytes, url: str) -> StoredArtifact:
    """Write ``data`` to ``url``."""
    fs, path = url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as writer:
        writer.write(data)
    return StoredArtifact(url=url, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def get(url: str, dest: str | Path, expected_sha256: str | None = None) -> Path:
    """Copy the artifact at ``url`` to the local file ``dest``; check its hash when one is given."""
    dest_path = Path(dest)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as reader, dest_path.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        dest_path.unlink()
        raise ValueError(
            f"artifact {url} has sha256 {digest.hexdigest()}, expected {expected_sha256}: "
            "the stored file changed since it was recorded"
        )
    return dest_path


def exists(url: str) -> bool:
    """Whether a file exists at ``url``."""
    fs, path = url_to_fs(url)
    return bool(fs.exists(path))


def sha256(url: str) -> str:
    """The sha256 hex digest of the artifact at ``url``."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
