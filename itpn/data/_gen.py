"""Shared pieces of the generators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import fsspec
import numpy as np

from ..config import ConfigValueError, Range
from ._check import MANIFEST_NAME
from .fs import list_files, open_fs


@dataclass
class GeneratedData:
    """What a generator wrote: the parameters and the ground truth of every sample (for round-trip checks)."""

    kind: str
    url: str
    params: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def empty_target(url: str, overwrite: bool) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open ``url`` for writing a new data set; refuses to mix with existing files unless ``overwrite``."""
    fs, root = open_fs(url)
    existing = [rel for rel in list_files(fs, root) if rel != MANIFEST_NAME]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{url} already holds {len(existing)} file(s) (e.g. {existing[0]}). "
                "Fix: generate into an empty URL or pass overwrite=True to replace them."
            )
        fs.rm(root, recursive=True)
    fs.makedirs(root, exist_ok=True)
    return fs, root


def sample_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per sample, so outputs do not depend on generation order."""
    return np.random.default_rng([seed, *keys])


class Rule(Protocol):
    """What a generator argument may be: ``admits(value)`` and ``describe()`` ("at least 1", ...)."""

    def admits(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ImageSize:
    """An image side in pixels: a multiple of ``step`` (the models' 16-pixel tokens), at least ``minimum``."""

    minimum: int
    step: int = 16

    def admits(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= self.minimum \
            and value % self.step == 0

    def describe(self) -> str:
        return f"a multiple of {self.step} and at least {self.minimum}"


@dataclass(frozen=True)
class CountRange:
    """A ``[min, max]`` pair of counts with ``0 <= min <= max`` (objects per image)."""

    def admits(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            return False
        low, high = value
        counts = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        return counts and 0 <= low <= high

    def describe(self) -> str:
        return "[min, max] with 0 <= min <= max"


@dataclass(frozen=True)
class Whole:
    """A whole number in a ``Range`` (class counts, image counts, seeds): a float like 3.5 is refused."""

    range: Range

    def admits(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.range.admits(value)

    def describe(self) -> str:
        return f"a whole number {self.range.describe()}"


def argument_problems(rules: Mapping[str, Rule], arguments: Mapping[str, Any]) -> list[ConfigValueError]:
    """Every argument in ``arguments`` that its rule in ``rules`` does not admit, as ``ConfigValueError``
    (key, value, expected) in the rules' order. Arguments without a rule are not checked here (their type
    is; see ``flows.params``)."""
    return [ConfigValueError(name, arguments[name], rule.describe()) for name, rule in rules.items()
            if name in arguments and not rule.admits(arguments[name])]


def check_arguments(rules: Mapping[str, Rule], **arguments: Any) -> None:
    """Raise the first of ``argument_problems`` (a ``ValueError`` naming the argument, its value and what it
    must be) before a generator writes anything."""
    problems = argument_problems(rules, arguments)
    if problems:
        raise problems[0]
