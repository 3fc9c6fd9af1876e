"""Typed run configurations read from dicts or YAML (``params.yaml`` sections), naming unknown keys and
values out of their range."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, TypeVar

import fsspec
import yaml

ConfigT = TypeVar("ConfigT", bound="DataclassConfig")


class ConfigValueError(ValueError):
    """A setting's value is not allowed: carries the setting's ``key``, its ``value`` and what it ``expected``,
    so a caller can name them in its own words (``flows.params`` adds the file and the section)."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(f"{key} must be {expected}, got {value!r}")
        self.key, self.value, self.expected = key, value, expected


@dataclass(frozen=True)
class Range:
    """The numbers a setting may take: from ``low`` (excluded when ``open_low``) up to ``high`` (excluded
    when ``open_high``); ``None`` leaves that side open."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: Any) -> bool:
        """A finite int or float within the bounds (a bool, a text, NaN or an infinity never is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def describe(self) -> str:
        low = "" if self.low is None else f"{'greater than' if self.open_low else 'at least'} {self.low:g}"
        high = "" if self.high is None else f"{'less than' if self.open_high else 'at most'} {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "a number"


COUNT = Range(1)  # updates, epochs, batch sizes, image sizes, widths
NON_NEGATIVE = Range(0)  # workers, warm-up, weight decay, seeds
POSITIVE = Range(0, open_low=True)  # learning rates, epsilons, clipping norms
FRACTION = Range(0, 1)  # probabilities, momenta, ratios


class DataclassConfig:
    """``from_dict`` / ``from_yaml`` for a dataclass config; an unknown key is an error naming it.

    ``RANGES`` maps numeric settings to the ``Range`` their values must lie in (a ``None`` value, where
    the field allows it, means "the default" and is not checked); ``check_ranges`` raises
    ``ConfigValueError`` for the first one outside, a subclass calls it from ``__post_init__``."""

    RANGES: Mapping[str, Range] = {}

    def check_ranges(self) -> None:
        """Raise ``ConfigValueError`` for a setting outside its ``RANGES`` entry (a text or a NaN included),
        and for any float setting that is not finite (an ``inf`` learning rate, a NaN weight decay)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigValueError(field.name, value, "a finite number")
        for name, allowed in self.RANGES.items():
            value = getattr(self, name)
            if value is not None and not allowed.admits(value):
                raise ConfigValueError(name, value, allowed.describe())

    @classmethod
    def from_dict(cls: type[ConfigT], values: Mapping[str, Any], source: Optional[str] = None) -> ConfigT:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {source or cls.__name__}; the known keys are: "
                             f"{', '.join(sorted(known))}")
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls: type[ConfigT], url: str, section: Optional[str] = None) -> ConfigT:
        """Read a YAML file (any fsspec URL), or one ``section`` of it (e.g. ``pretrain`` of ``params.yaml``)."""
        return cls.from_dict(read_yaml_section(url, section), source=url + (f" [{section}]" if section else ""))


def read_yaml_section(url: str, section: Optional[str] = None) -> dict[str, Any]:
    """A YAML file (any fsspec URL) as a dict, or its ``section``; a missing section names those there."""
    with fsspec.open(url, "rt") as handle:
        document = yaml.safe_load(handle) or {}
    if section is not None:
        if section not in document:
            raise KeyError(f"{url} has no {section!r} section (it has: {', '.join(map(str, document))})")
        document = document[section]
    return dict(document)
