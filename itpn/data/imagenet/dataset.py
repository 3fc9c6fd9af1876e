"""``ImageNetFolder`` and ``ImageNetTarShards``: ImageNet's two layouts as classification datasets."""
from __future__ import annotations

import tarfile
from typing import Any, Callable, Iterable

from PIL import Image

from .._base import RobustDataset, resolve_skip
from ..errors import CorruptImageError, LayoutError
from ..fs import display, join, list_files, open_fs, read_bytes
from .layout import CLASSES_FILE, is_image, to_rgb


class ImageNetFolder(RobustDataset):
    """``<url>/<split>/<wnid>/*.JPEG`` as ``(image, label)``; labels index the sorted train class folders.

    ``transform`` gets a PIL RGB image (see :func:`build_classification_transform`). Samples listed in
    ``skip`` (default: the manifest's skipped list) are left out; unreadable ones are skipped at run time.
    ``per_class``: keep only the first ``per_class`` images of each class in sorted file order (a fixed
    labelled subset, the same for every run; a class with fewer keeps all it has). ``None``: all.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        classes: list[str] | None = None,
        skip: Iterable[str] | None = None,
        strict: bool = False,
        per_class: int | None = None,
    ) -> None:
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be at least 1 (or None for every image), got {per_class}")
        super().__init__(url, strict=strict)
        self.split = split
        self.transform = transform
        self.classes = list(classes) if classes is not None else self.find_classes(url)
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        exclude = resolve_skip(url, skip)
        files = sorted(list_files(self.fs, join(self.root, split)))
        if not files:
            raise LayoutError(f"no files in split {split!r}", file=display(url, split),
                              fix="point the URL at the folder holding train/ and val/")
        self.samples: list[tuple[str, int]] = []
        for rel in files:
            parts = rel.split("/")
            key = f"{split}/{rel}"
            if len(parts) != 2 or not is_image(rel) or key in exclude or parts[0] not in self.class_to_idx:
                continue
            self.samples.append((key, self.class_to_idx[parts[0]]))
        if per_class is not None:
            seen: dict[int, int] = {}
            subset = []
            for key, label in self.samples:
                seen[label] = seen.get(label, 0) + 1
                if seen[label] <= per_class:
                    subset.append((key, label))
            self.samples = subset
        self.targets = [label for _, label in self.samples]

    @staticmethod
    def find_classes(url: str) -> list[str]:
        """The sorted class folders of ``train/`` (the label space of every split)."""
        fs, root = open_fs(url)
        files = list_files(fs, join(root, "train"))
        if not files:
            raise LayoutError("no train/ folder with images", file=display(url, "train"),
                              fix="point the URL at the folder holding train/<wnid>/ and val/<wnid>/")
        return sorted({rel.split("/")[0] for rel in files if rel.count("/") == 1})

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        return self.samples[index][0]

    def _load(self, index: int) -> tuple[Image.Image, int]:
        rel, label = self.samples[index]
        return to_rgb(read_bytes(self.fs, self.path(rel))), label

    def _finish(self, sample: tuple[Image.Image, int]) -> tuple[Any, int]:
        image, label = sample
        return (self.transform(image) if self.transform else image), label


class ImageNetTarShards(RobustDataset):
    """The sharded-tar layout as ``(image, label)``; members are read by byte range, so any fsspec URL works.

    Sample keys (for ``skip`` and ``skipped``) are ``<split>/<shard>.tar:<wnid>/<name>``; a shard key
    leaves out the whole shard.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        skip: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transform = transform
        self.classes = read_classes_file(url)
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        exclude = resolve_skip(url, skip)
        shards = sorted(rel for rel in list_files(self.fs, join(self.root, split)) if rel.endswith(".tar"))
        if not shards:
            raise LayoutError(f"no .tar shards in split {split!r}", file=display(url, split),
                              fix="write shards with shard_imagenet() or generate_imagenet(layout='tar')")
        self.samples: list[tuple[str, str, int, int, int]] = []
        for shard in shards:
            shard_rel = f"{split}/{shard}"
            if shard_rel in exclude:
                continue
            try:
                with self.fs.open(self.path(shard_rel), "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
                    members = [m for m in tar if m.isfile()]
            except (OSError, tarfile.TarError) as exc:
                if strict:
                    raise CorruptImageError(f"archive cannot be read: {exc}", file=display(url, shard_rel),
                                            fix="re-copy the shard or rebuild it with shard_imagenet()") from exc
                self.skipped.append(shard_rel)
                continue
            for member in members:
                wnid = member.name.split("/", 1)[0]
                key = f"{shard_rel}:{member.name}"
                if key in exclude or wnid not in self.class_to_idx or not is_image(member.name):
                    continue
                self.samples.append((shard_rel, member.name, self.class_to_idx[wnid], member.offset_data, member.size))
        self.targets = [s[2] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        shard, name = self.samples[index][:2]
        return f"{shard}:{name}"

    def _load(self, index: int) -> tuple[Image.Image, int]:
        shard, _, label, offset, size = self.samples[index]
        data = self.fs.cat_file(self.path(shard), start=offset, end=offset + size)
        return to_rgb(data), label

    def _finish(self, sample: tuple[Image.Image, int]) -> tuple[Any, int]:
        image, label = sample
        return (self.transform(image) if self.transform else image), label


def read_classes_file(url: str) -> list[str]:
    fs, root = open_fs(url)
    path = join(root, CLASSES_FILE)
    if not fs.exists(path):
        raise LayoutError(f"no {CLASSES_FILE}", file=display(url, CLASSES_FILE),
                          fix="write one wnid per line (line i = class index i), e.g. with shard_imagenet()")
    return [line.strip() for line in read_bytes(fs, path).decode().splitlines() if line.strip()]
