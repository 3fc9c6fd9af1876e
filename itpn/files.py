"""Run outputs (checkpoints, exports, metrics) at any fsspec URL: a plain path is the local disk.

A file a later run reads to resume or to skip work (a checkpoint, an export, a finished evaluation's
rows, a stage's result) is written atomically: a process killed at any moment leaves either the
previous file whole or the new one whole, never a torn one. On a local disk that is a temporary file
in the same folder, flushed to the disk (``fsync``), then ``os.replace``d over the name (atomic on
POSIX), and the folder fsynced so the rename itself survives a power loss; on object storage a put
of one object is atomic already.
"""
from __future__ import annotations

import os

import fsspec


def join_url(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def is_local(filesystem: fsspec.AbstractFileSystem) -> bool:
    """Whether ``filesystem`` is the local disk (where a rename is the atomic step)."""
    protocols = filesystem.protocol if isinstance(filesystem.protocol, tuple) else (filesystem.protocol,)
    return "file" in protocols or "local" in protocols


def temporary_path(path: str) -> str:
    """A hidden name beside ``path`` that no other process writes (it carries this process's id) and no
    glob for the real name (``iter_*.pth``, ``*.json``) matches."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.tmp")


def remove_leftovers(path: str) -> list[str]:
    """Remove the temporary files of ``path`` (``temporary_path``) that other processes left, killed before
    they renamed them; returns their names. A checkpoint's can be gigabytes."""
    directory, name = os.path.split(path)
    if not os.path.isdir(directory or "."):
        return []
    mine = os.path.basename(temporary_path(path))
    left = [entry for entry in os.listdir(directory or ".")
            if entry.startswith(f".{name}.") and entry.endswith(".tmp") and entry != mine]
    for entry in left:
        os.remove(os.path.join(directory, entry))
    return left


def replace_atomically(temporary: str, path: str) -> None:
    """Move the finished local file ``temporary`` over ``path``: its bytes are flushed to the disk first
    and the folder after, so a kill or a power loss leaves the old ``path`` or the new one."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_atomically(url: str, payload: bytes) -> None:
    """Write ``payload`` to ``url`` so that a run killed while writing leaves the previous file whole
    (on a local disk: a temporary file beside it, fsynced, then renamed over it)."""
    filesystem, path = fsspec.core.url_to_fs(url)
    if not is_local(filesystem):
        filesystem.pipe_file(path, payload)  # one object put: whole or absent
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = temporary_path(path)
    with open(temporary, "wb") as handle:
        handle.write(payload)
    replace_atomically(temporary, path)
