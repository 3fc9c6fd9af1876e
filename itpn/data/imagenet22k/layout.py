"""ImageNet-22K's three layouts, told apart by what ``url`` holds.

``folders``: ``<wnid>/<name>.JPEG``, one folder per class (the full release unpacked).
``class_tars``: ``<wnid>.tar``, one archive per class (``fall11_whole.tar`` / ``winter21_whole.tar`` unpacked
one level, as the release is usually kept: 21,841 archives for fall11).
``whole_tar``: the release's single archive itself (one ``.tar`` whose members are the class archives),
read in place by byte range.

Labels are the positions of the wnids in sorted order, over every class the layout has (an empty or
damaged class keeps its label, so labels do not move when a class is repaired).
"""
from __future__ import annotations

import logging
import posixpath
import re
import tarfile
from dataclasses import dataclass
from typing import Literal, Optional

from .._check import IMAGE_EXTENSIONS
from ..errors import LayoutError
from ..fs import display, join, open_fs

log = logging.getLogger(__name__)

WNID = re.compile(r"n\d{8}")
INDEX_FOLDER = "_itpn_index"
COUNTS_FILE = "counts.json"
FULL_CLASS_COUNT = 21_841  # fall11 (the paper's "ImageNet-21K"/"22K"); winter21 has 19,167

LayoutKind = Literal["folders", "class_tars", "whole_tar"]


@dataclass
class Layout:
    """What ``detect_layout`` found: the ``kind``, the wnids in label order and, per wnid, where its
    images are: ``None`` (folders) or ``(archive, start byte, size)`` relative to the data set's root."""

    kind: LayoutKind
    classes: dict[str, Optional[tuple[str, int, int]]]

    @property
    def wnids(self) -> list[str]:
        return list(self.classes)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def wnid_of(name: str) -> Optional[str]:
    """The class an ImageNet file name says it belongs to (``n01440764_10026.JPEG`` -> ``n01440764``)."""
    match = WNID.match(name)
    return match.group(0) if match and name[match.end():match.end() + 1] == "_" else None


def index_url_of(url: str) -> str:
    """Where the index of the data set at ``url`` is kept by default: ``<url>/_itpn_index``."""
    return f"{url.rstrip('/')}/{INDEX_FOLDER}"


def detect_layout(url: str) -> Layout:
    """The layout of the ImageNet-22K copy at ``url``. Lists ``url`` once (not the images); for the
    whole-archive layout reads the archive's headers (one per class). Raises ``LayoutError`` naming
    the URL and the three layouts when none fits."""
    fs, root = open_fs(url)
    if not fs.exists(root):
        raise LayoutError("no such folder", file=url, fix="point the URL at the ImageNet-22K copy")
    entries = fs.ls(root, detail=True)
    names = {posixpath.basename(fs._strip_protocol(info["name"]).rstrip("/")): info for info in entries}
    folders = sorted(name for name, info in names.items() if info.get("type") == "directory" and WNID.fullmatch(name))
    tars = sorted(name for name, info in names.items()
                  if info.get("type") == "file" and name.endswith(".tar") and WNID.fullmatch(name[:-4]))
    if folders:
        return Layout("folders", {wnid: None for wnid in folders})
    if tars:
        return Layout("class_tars", {name[:-4]: (name, 0, int(names[name].get("size") or 0)) for name in tars})
    archives = sorted(name for name, info in names.items() if info.get("type") == "file" and name.endswith(".tar"))
    if len(archives) == 1:
        classes = _whole_tar_classes(url, archives[0])
        if classes:
            return Layout("whole_tar", classes)
    raise LayoutError("neither <wnid>/ folders, <wnid>.tar archives nor one archive of class archives",
                      file=url, fix="point the URL at the unpacked release (fall11_whole/ or winter21_whole/), "
                      "or at the folder holding fall11_whole.tar")


def _whole_tar_classes(url: str, archive: str) -> dict[str, tuple[str, int, int]]:
    fs, root = open_fs(url)
    classes: dict[str, tuple[str, int, int]] = {}
    try:
        with fs.open(join(root, archive), "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as outer:
            for member in outer:
                name = posixpath.basename(member.name)
                if member.isfile() and name.endswith(".tar") and WNID.fullmatch(name[:-4]):
                    classes[name[:-4]] = (archive, member.offset_data, member.size)
    except (tarfile.TarError, OSError) as exc:
        if not classes:
            raise LayoutError(f"the archive cannot be read ({exc})", file=display(url, archive),
                              fix="re-copy it, or unpack it one level (class archives side by side)") from exc
        log.warning("%s: the archive cannot be read past its %d-th class archive (%s); the classes after it are "
                    "missing from the label space until it is re-copied", display(url, archive), len(classes), exc)
    return dict(sorted(classes.items()))
