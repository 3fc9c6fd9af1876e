"""Typed run configurations read from dicts or YAML (``params.yaml`` sections), naming unknown keys."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, TypeVar

import fsspec
import yaml

ConfigT = TypeVar("ConfigT", bound="DataclassConfig")


class DataclassConfig:
    """``from_dict`` / ``from_yaml`` for a dataclass config; an unknown key is an error naming it."""

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
