"""``ImageNet22k``: ImageNet-22K as a classification dataset, from its cached index (``build_index``)."""
from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any, Callable, Literal, Optional

from PIL import Image

from .._base import RobustDataset
from ..fs import join, read_bytes
from ..imagenet.layout import to_rgb
from .index import ClassIndex, read_class_index, read_counts
from .layout import index_url_of


class ImageNet22k(RobustDataset):
    """ImageNet-22K (any of ``layout``'s three layouts) as ``(image, label)``, labels in sorted-wnid order.

    Only ``counts.json`` of the index is read when the dataset is made; a class's sample list is read when
    one of its samples is first asked for, and at most ``cached_classes`` lists are kept per process (a
    worker holds a few MB, not the 14 M names). Unreadable images are skipped at run time like every
    ``RobustDataset`` (``skipped``); what indexing dropped is listed in the index.

    ImageNet-22K ships no validation split. ``split="val"`` is the last ``holdout_per_class`` samples of each
    class in name order and ``split="train"`` the rest -- our choice (a fixed, reproducible hold-out; the
    paper does not say how its intermediate fine-tuning was validated). ``holdout_per_class=0``: all train.
    """

    def __init__(self, url: str, split: Literal["train", "val"] = "train",
                 transform: Optional[Callable[[Image.Image], Any]] = None, *, index_url: Optional[str] = None,
                 holdout_per_class: int = 0, strict: bool = False, cached_classes: int = 256) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if holdout_per_class < 0:
            raise ValueError(f"holdout_per_class must be at least 0, got {holdout_per_class}")
        if split == "val" and holdout_per_class == 0:
            raise ValueError("split='val' needs holdout_per_class > 0: ImageNet-22K has no validation split of its "
                             "own, the hold-out is the last holdout_per_class images of each class")
        super().__init__(url, strict=strict)
        self.split, self.transform = split, transform
        self.index_url = index_url or index_url_of(url)
        counts = read_counts(self.index_url)
        self.layout: str = counts["layout"]
        self.classes: list[str] = list(counts["counts"])
        self.class_to_idx = {wnid: label for label, wnid in enumerate(self.classes)}
        self.holdout = holdout_per_class
        self._spans: list[tuple[int, int]] = []  # per class: first sample of the split, samples in it
        self._starts: list[int] = []
        total = 0
        for wnid in self.classes:
            count = counts["counts"][wnid]
            held = min(self.holdout, count)
            first, size = (count - held, held) if split == "val" else (0, count - held)
            self._starts.append(total)
            self._spans.append((first, size))
            total += size
        self._length = total
        self._cache: OrderedDict[str, ClassIndex] = OrderedDict()
        self._cached_classes = max(1, cached_classes)

    def __len__(self) -> int:
        return self._length

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_cache"] = OrderedDict()  # each worker reads the class lists it needs
        return state

    def _locate(self, index: int) -> tuple[int, int]:
        # the last class starting at or before ``index``: never an empty one (it shares its start with the next)
        label = bisect.bisect_right(self._starts, index) - 1
        return label, self._spans[label][0] + index - self._starts[label]

    def _class_index(self, wnid: str) -> ClassIndex:
        index = self._cache.get(wnid)
        if index is None:
            index = read_class_index(self.index_url, wnid)
            self._cache[wnid] = index
            if len(self._cache) > self._cached_classes:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(wnid)
        return index

    def _key(self, index: int) -> str:
        label, position = self._locate(index)
        wnid = self.classes[label]
        name = self._class_index(wnid).members[position][0]
        return f"{wnid}/{name}" if self.layout == "folders" else f"{self._class_index(wnid).container}:{name}"

    def _load(self, index: int) -> tuple[Image.Image, int]:
        label, position = self._locate(index)
        class_index = self._class_index(self.classes[label])
        name, offset, size = class_index.members[position]
        if self.layout == "folders":
            data = read_bytes(self.fs, join(self.root, class_index.wnid, name))
        else:
            data = self.fs.cat_file(self.path(class_index.container), start=offset, end=offset + size)
        return to_rgb(data), label

    def _finish(self, sample: tuple[Image.Image, int]) -> tuple[Any, int]:
        image, label = sample
        return (self.transform(image) if self.transform else image), label
