"""The sample index of ImageNet-22K, built once per class and cached, so that no run lists 14 M files.

``build_index(url)`` writes, for every class, ``<index>/<wnid>.json`` (its samples: name, and for the tar
layouts the byte offset and size of the member inside the archive; the records it dropped and why) and,
when every class is done, ``<index>/counts.json`` (samples per class, in label order). Each class file is
written atomically as its class is finished, so a build that is killed resumes with the classes left;
classes are scanned on a pool of threads (reading tar headers is I/O). The datasets read ``counts.json``
up front and a class's file only when one of its samples is first asked for.

The smallest bad unit is dropped and counted, never its class: a member that is not an image, an empty
member, a member named for another class, and the unreadable tail of a truncated archive (the members
before the damage are kept).
"""
from __future__ import annotations

import json
import logging
import posixpath
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from itpn.files import write_atomically

from ..errors import LayoutError
from ..fs import display, join, open_fs
from .layout import COUNTS_FILE, Layout, detect_layout, index_url_of, is_image, wnid_of

log = logging.getLogger(__name__)


@dataclass
class ClassIndex:
    """One class's samples: ``members`` as ``[name, offset, size]`` (offset and size -1 in the folder
    layout, where ``name`` is the file under ``<wnid>/``), ``dropped`` as ``[record, reason]``."""

    wnid: str
    container: Optional[str]
    members: list[list[Any]] = field(default_factory=list)
    dropped: list[list[str]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"wnid": self.wnid, "container": self.container, "members": self.members,
                           "dropped": self.dropped}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> "ClassIndex":
        data = json.loads(payload)
        return cls(data["wnid"], data["container"], data["members"], data["dropped"])


class _Window:
    """A read-only, seekable view of bytes ``[start, start + size)`` of an open file: a class tar inside
    the whole-archive layout, opened by ``tarfile`` as if it were a file of its own."""

    def __init__(self, handle: Any, start: int, size: int) -> None:
        self.handle, self.start, self.size, self.position = handle, start, size, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = min(max(base + offset, 0), self.size)
        return self.position

    def read(self, count: int = -1) -> bytes:
        left = self.size - self.position
        count = left if count is None or count < 0 else min(count, left)
        self.handle.seek(self.start + self.position)
        data = self.handle.read(count)
        self.position += len(data)
        return data


def _member_problem(wnid: str, name: str, size: int) -> Optional[str]:
    base = posixpath.basename(name)
    if not is_image(base):
        return "not an image (by its extension)"
    if size == 0:
        return "empty (0 bytes)"
    owner = wnid_of(base)
    if owner is not None and owner != wnid:
        return f"named for class {owner}, found in class {wnid}: left out rather than given either label"
    return None


def _scan_tar(index: ClassIndex, handle: Any, start: int, size: int, label: str) -> None:
    """Add the members of the tar at ``[start, start + size)`` of ``handle`` to ``index``; on damage keep
    what came before and record the rest as one dropped record."""
    window = _Window(handle, start, size)
    seen = 0
    try:
        with tarfile.open(fileobj=window, mode="r:") as archive:  # type: ignore[arg-type]
            for member in archive:
                seen += 1
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:  # the copy stopped here: nothing after it exists
                    index.dropped.append([f"{label}:{member.name}", f"truncated: the archive ends "
                                          f"{member.offset_data + member.size - size} bytes before this member "
                                          f"does. Fix: re-copy {label}"])
                    break
                problem = _member_problem(index.wnid, member.name, member.size)
                if problem:
                    index.dropped.append([f"{label}:{member.name}", problem])
                else:
                    index.members.append([member.name, start + member.offset_data, member.size])
            # tarfile ends quietly at a damaged header; an archive ends with zero blocks, so data there is damage
            window.seek(archive.offset)
            if window.read(tarfile.BLOCKSIZE).strip(b"\0"):
                index.dropped.append([f"{label}:<after member {seen}>", f"an unreadable header at byte "
                                      f"{archive.offset}: the members after it are lost; {len(index.members)} "
                                      f"images before it kept. Fix: re-copy {label}"])
    except (tarfile.TarError, OSError, EOFError) as exc:
        index.dropped.append([f"{label}:<after member {seen}>", f"the archive cannot be read past here ({exc}); "
                              f"{len(index.members)} images before it kept. Fix: re-copy {label}"])


def scan_class(url: str, layout: Layout, wnid: str) -> ClassIndex:
    """The index of class ``wnid`` of the data set at ``url`` (no cache involved)."""
    fs, root = open_fs(url)
    entry = layout.classes[wnid]
    if layout.kind == "folders":
        index = ClassIndex(wnid, None)
        folder = join(root, wnid)
        for info in sorted(fs.ls(folder, detail=True), key=lambda item: item["name"]):
            if info.get("type") != "file":
                continue
            name = posixpath.basename(fs._strip_protocol(info["name"]))
            problem = _member_problem(wnid, name, int(info.get("size") or 0))
            if problem:
                index.dropped.append([f"{wnid}/{name}", problem])
            else:
                index.members.append([name, -1, -1])
        return index
    container, start, size = entry
    index = ClassIndex(wnid, container)
    label = container if layout.kind == "class_tars" else f"{container}:{wnid}.tar"
    with fs.open(join(root, container), "rb") as handle:
        _scan_tar(index, handle, start, size, label)
    index.members.sort(key=lambda member: member[0])
    return index


def build_index(url: str, index_url: Optional[str] = None, *, workers: int = 8,
                progress: Optional[Callable[[int, int], None]] = None) -> dict[str, int]:
    """Index every class of the ImageNet-22K data set at ``url`` (any fsspec URL) into ``index_url``
    (default ``<url>/_itpn_index``; give another when ``url`` is read-only). Classes whose file exists are
    not scanned again (a killed build resumes). Returns the samples per class in label order and writes
    them to ``counts.json``. ``progress(done, total)`` is called as classes finish; a log line every
    ~10 s says how far it is. Raises ``LayoutError`` when ``url`` holds neither layout."""
    layout = detect_layout(url)
    target = index_url or index_url_of(url)
    fs, root = open_fs(target)
    fs.makedirs(root, exist_ok=True)
    existing = {posixpath.basename(path) for path in fs.ls(root, detail=False)}
    todo = [wnid for wnid in layout.wnids if f"{wnid}.json" not in existing]
    total, done, last_log = len(layout.wnids), len(layout.wnids) - len(todo), time.monotonic()

    def scan(wnid: str) -> str:
        write_atomically(join(target.rstrip("/"), f"{wnid}.json"), scan_class(url, layout, wnid).to_json())
        return wnid

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(scan, todo):
            done += 1
            if progress:
                progress(done, total)
            if time.monotonic() - last_log > 10:
                log.info("indexing %s: %d of %d classes", url, done, total)
                last_log = time.monotonic()
    counts, dropped = {}, 0
    for wnid in layout.wnids:
        index = read_class_index(target, wnid)
        counts[wnid] = len(index.members)
        dropped += len(index.dropped)
    write_atomically(join(target.rstrip("/"), COUNTS_FILE),
                     json.dumps({"layout": layout.kind, "counts": counts, "dropped": dropped}).encode())
    if dropped:
        log.warning("%s: %d records dropped while indexing (listed per class in %s/<wnid>.json)", url, dropped,
                    target)
    return counts


def read_class_index(index_url: str, wnid: str) -> ClassIndex:
    """The cached index of class ``wnid``; ``LayoutError`` naming the file and the fix when it is missing."""
    fs, root = open_fs(index_url)
    path = join(root, f"{wnid}.json")
    try:
        with fs.open(path, "rb") as handle:
            return ClassIndex.from_json(handle.read())
    except FileNotFoundError:
        raise LayoutError(f"no index of class {wnid}", file=display(index_url, f"{wnid}.json"),
                          fix="run itpn.data.imagenet22k.build_index on the data set first") from None


def read_counts(index_url: str) -> dict[str, Any]:
    """``counts.json`` of a finished index: ``{"layout", "counts": {wnid: n}, "dropped"}``."""
    fs, root = open_fs(index_url)
    path = join(root, COUNTS_FILE)
    if not fs.exists(path):
        raise LayoutError("the index is not finished (no counts.json)", file=display(index_url, COUNTS_FILE),
                          fix="run itpn.data.imagenet22k.build_index on the data set (it resumes where it stopped)")
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())
