"""Data errors, validation problems and the validation report.

Every problem names the file (as a URL), the line or record inside it, what is wrong and how to fix it.
In strict mode the first error is raised as its named exception class; by default the affected samples
are skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning"]


class DataError(Exception):
    """Base class of every data-layer error; ``file``, ``record`` and ``fix`` say where and what to do."""

    def __init__(self, message: str, *, file: str = "", record: str | None = None, fix: str = "") -> None:
        self.file = file
        self.record = record
        self.fix = fix
        self.detail = message
        where = file + (f" ({record})" if record else "")
        text = f"{where}: {message}" if where else message
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)


class LayoutError(DataError):
    """A required folder or file is missing, or a split holds no samples."""


class EmptyFileError(DataError):
    """A file has zero bytes."""


class CorruptImageError(DataError):
    """An image (or the archive holding it) cannot be decoded completely."""


class AnnotationSchemaError(DataError):
    """An annotation file is not valid JSON/text or misses a required key, or a value has the wrong type."""


class BoxOutOfRangeError(DataError):
    """A bounding box is degenerate or lies outside its image."""


class PolygonError(DataError):
    """A polygon has an odd number of coordinates, too few points, zero area or points outside the image."""


class MaskValueError(DataError):
    """A segmentation mask holds values outside the class range or does not match its image."""


class DotaLineError(DataError):
    """A DOTA ``labelTxt`` line does not have 8 coordinates, a class name and a difficulty."""


class UnknownClassError(DataError):
    """A class name or id is not part of the data set's label space."""


class DuplicateError(DataError):
    """The same id, file name or image content appears more than once."""


ERRORS: dict[str, type[DataError]] = {
    cls.__name__: cls
    for cls in (
        LayoutError,
        EmptyFileError,
        CorruptImageError,
        AnnotationSchemaError,
        BoxOutOfRangeError,
        PolygonError,
        MaskValueError,
        DotaLineError,
        UnknownClassError,
        DuplicateError,
    )
}


@dataclass(frozen=True)
class Problem:
    """One finding of a validator.

    ``code`` is the name of the error class raised for it in strict mode; ``sample`` is the key of the
    sample skipped because of it (None when nothing is skipped, e.g. warnings); ``dropped`` is the level of
    what was left out because of it: ``"images"`` (the sample), ``"annotations"`` (one COCO annotation),
    ``"lines"`` (one DOTA label line), ``"pixels"`` (mask pixels set to "not labelled"), or None.
    """

    code: str
    severity: Severity
    file: str
    message: str
    fix: str
    record: str | None = None
    sample: str | None = None
    dropped: str | None = None

    def to_error(self) -> DataError:
        return ERRORS[self.code](self.message, file=self.file, record=self.record, fix=self.fix)

    def __str__(self) -> str:
        return str(self.to_error())

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "record": self.record,
            "message": self.message,
            "fix": self.fix,
            "sample": self.sample,
            "dropped": self.dropped,
        }


@dataclass
class ValidationReport:
    """What a validator found in one data set.

    ``counts`` are per split (``train/images`` ...), ``skipped`` maps each split to the sample keys
    (paths relative to the data-set root) that readers must leave out, ``dropped`` counts per split what
    was left out at each level (``images``, ``shards``, ``annotations``, ``lines``, ``pixels``: the smallest
    bad unit goes, the good annotations of its image stay), ``file_hashes`` holds the sha256 of every
    file read, for the manifest's content hash.
    """

    kind: str
    url: str
    classes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    file_hashes: dict[str, str] = field(default_factory=dict)
    file_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "warning"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "fatal"]

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def skipped_samples(self) -> list[str]:
        return sorted(key for keys in self.skipped.values() for key in keys)

    def dropped_total(self) -> dict[str, int]:
        """What was left out at each level, summed over the splits: ``{"images": 1, "annotations": 3}``."""
        total: Counter[str] = Counter()
        for levels in self.dropped.values():
            total.update(levels)
        return dict(sorted(total.items()))

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_code(self) -> dict[str, int]:
        return dict(Counter(p.code for p in self.problems))

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        head = (
            f"{self.kind} at {self.url}: {counts or 'no samples'}; "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), {self.num_skipped} sample(s) skipped"
        )
        dropped = ", ".join(f"{n} {level}" for level, n in self.dropped_total().items())
        if dropped:
            head += f"; dropped: {dropped}"
        lines = [head] + [f"  [{p.severity}] {p}" for p in self.problems]
        return "\n".join(lines)

    def raise_if_failed(self, strict: bool) -> None:
        """Raise the first fatal problem, or in strict mode the first error, as its named exception."""
        blocking = self.fatal or (self.errors if strict else [])
        if not blocking:
            return
        first = blocking[0]
        error = first.to_error()
        others = len(blocking) - 1
        if others:
            error.args = (f"{error.args[0]} (and {others} more problem(s): {self.by_code()})",)
        error.report = self  # type: ignore[attr-defined]
        raise error

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "classes": self.classes,
            "counts": self.counts,
            "class_counts": self.class_counts,
            "problems": [p.to_dict() for p in self.problems],
            "skipped": self.skipped,
            "dropped": self.dropped,
        }
