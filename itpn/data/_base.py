"""Dataset base: leaves out the samples validation marked as bad and skips unreadable ones at run time."""

from __future__ import annotations

import abc
import logging
from typing import Any, Iterable

import fsspec
from torch.utils.data import Dataset

from .errors import CorruptImageError, DataError
from .fs import display, open_fs
from .manifest import load_manifest

log = logging.getLogger(__name__)

LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, KeyError, DataError)


def resolve_skip(url: str, skip: Iterable[str] | None) -> set[str]:
    """Sample keys to leave out: ``skip`` when given, else the ``skipped`` list of the data set's manifest."""
    if skip is not None:
        return set(skip)
    manifest = load_manifest(url)
    return set(manifest.get("skipped", [])) if manifest else set()


class RobustDataset(Dataset, abc.ABC):
    """A map-style dataset whose ``__getitem__`` never fails on one bad sample.

    Subclasses implement ``__len__``, ``_key(i)`` (the sample's path relative to the root) and
    ``_load(i)`` (read + decode, no augmentation) and ``_finish(sample)`` (transforms). When ``_load``
    fails, the sample is recorded in ``self.skipped`` and the next one is returned; with ``strict`` it
    raises :class:`CorruptImageError` naming the file instead.
    """

    def __init__(self, url: str, *, strict: bool = False) -> None:
        self.url = url
        self.strict = strict
        self.skipped: list[str] = []
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root: str | None = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, self._root = open_fs(self.url)
        return self._fs

    @property
    def root(self) -> str:
        if self._root is None:
            self._fs, self._root = open_fs(self.url)
        return self._root

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        return state

    @abc.abstractmethod
    def _key(self, index: int) -> str:
        """The file (or record) name of sample ``index``, for skip lists and error messages."""

    @abc.abstractmethod
    def _load(self, index: int) -> Any:
        """Read and decode sample ``index``; raising marks the sample bad."""

    def _finish(self, sample: Any) -> Any:
        return sample

    def __getitem__(self, index: int) -> Any:
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"index {index} out of range for {size} samples")
        index %= size
        for step in range(size):
            i = (index + step) % size
            try:
                sample = self._load(i)
            except LOAD_ERRORS as exc:
                key = self._key(i)
                if self.strict:
                    raise CorruptImageError(
                        f"sample cannot be loaded: {exc}",
                        file=display(self.url, key),
                        fix="re-copy the file or run validate() and train with strict=False to skip it",
                    ) from exc
                if key not in self.skipped:
                    self.skipped.append(key)
                    log.warning("skipping unreadable sample %s: %s", display(self.url, key), exc)
                continue
            return self._finish(sample)
        raise CorruptImageError(
            f"none of the {size} samples can be loaded", file=self.url, fix="run validate() on this data set"
        )
