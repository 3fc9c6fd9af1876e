"""Result rows, defined once: the metric row, the benchmark row, the task names and the files rows travel in.

A fine-tune writes ``metrics.json`` (a JSON list of metric rows) and ``curve.jsonl`` (one metric row a
line); pre-training logs ``metrics.jsonl`` (a step and its values a line, ``read_metrics_jsonl``); the
acceleration benchmark returns benchmark rows. The flows read these files and hand the rows to the
results store (``services.store``), which keeps exactly these fields. A row of one acceleration variant
carries the ``TokenLayout`` it ran with (input size, token grid, windows, gathering tokens, migration;
computed by ``itpn.models.layout``), flattened into the layout's keys in its dict and its store columns. It imports no
torch (the store, the dashboard and the flows read it without loading a model library).
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import fsspec

from itpn.files import join_url, write_atomically

# The fine-tuning tasks (a stage is finetune_<task>) and the metric each is judged by.
MAIN_METRICS = {"classification": "top1", "detection": "bbox_mAP", "segmentation": "mIoU", "rotated": "mAP"}
TASKS = tuple(MAIN_METRICS)
# What turns each task's main metric into percent, the paper's unit: COCO and DOTA mAP are kept in [0, 1].
PERCENT = {"classification": 1.0, "detection": 100.0, "segmentation": 1.0, "rotated": 100.0}
MODEL_SIZES = ("tiny", "small", "base", "large", "huge")


def model_size(model: str) -> str:
    """The size word of a model name (``fast_itpn_base_patch16_224`` -> ``base``), ``''`` when it has none."""
    return next((part for part in model.split("_") if part in MODEL_SIZES), "")


def model_family(model: str) -> str:
    """The name up to the size word (``fast_itpn_base_patch16_224`` -> ``fast_itpn``), the name when it has none."""
    size = model_size(model)
    return model.split(f"_{size}")[0] if size else model


def _text(value: Any, what: str, *, required: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    if required and not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number} (a diverged run or an empty evaluation); rows hold finite values only")
    return number


def _optional_finite(value: Any, what: str) -> float | None:
    return None if value is None else _finite(value, what)


# --- the layout a per-variant row ran with (computed by itpn.models.layout.effective_layout) ---
@dataclass(frozen=True)
class TokenLayout:
    """How stage 3 of a model ran one input size under one acceleration variant.

    ``input_h`` x ``input_w``: the image size in px the backbone saw; ``grid_h`` x ``grid_w``: the stage-3
    token grid (input / 16); ``windows_h`` x ``windows_w``: windows per side (1 x 1 is global attention);
    ``window_h`` x ``window_w``: tokens per window side (the largest window; the grid under global
    attention); ``gathering_tokens``: gathering tokens per image (one per window, or 0);
    ``migrated_per_layer``: tokens every window drops in each stage-3 layer, comma-separated from the
    first layer (``""`` when none migrate); ``tokens_left``: the share of a window's tokens that stays
    through all of stage 3 (1.0 without migration).
    """

    input_h: int
    input_w: int
    grid_h: int
    grid_w: int
    windows_h: int
    windows_w: int
    window_h: int
    window_w: int
    gathering_tokens: int
    migrated_per_layer: str
    tokens_left: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Optional["TokenLayout"]:
        """The layout held in ``row``'s layout keys (a record's dict, a store row); None when the row has
        none (``input_h`` missing or 0: recorded before layouts were, or not a per-variant value)."""
        if not row.get("input_h"):
            return None
        missing = [key for key in LAYOUT_FIELDS if row.get(key) is None]
        if missing:
            raise ValueError(f"{dict(row)!r} has an input size but not the rest of its layout: {missing}")
        kinds = {field.name: field.type for field in fields(cls)}  # a table's column may hold 14.0 for 14
        return cls(**{key: {"int": int, "float": float, "str": str}[kinds[key]](row[key]) for key in LAYOUT_FIELDS})

    @property
    def size(self) -> str:
        """The input size as the dashboard writes it, e.g. ``512×512``."""
        return f"{self.input_h}×{self.input_w}"

    def describe(self) -> str:
        """One line for a hover or a table cell, e.g. ``512×512 px, grid 32×32, 4×4 windows of 8×8,
        16 gathering tokens, migrates 2,2,2,1 per window (88 % left)``."""
        parts = [f"{self.size} px", f"grid {self.grid_h}×{self.grid_w}"]
        if (self.windows_h, self.windows_w) == (1, 1):
            parts.append("global attention")
        else:
            parts.append(f"{self.windows_h}×{self.windows_w} windows of {self.window_h}×{self.window_w}")
        if self.gathering_tokens:
            parts.append(f"{self.gathering_tokens} gathering tokens")
        if self.migrated_per_layer:
            parts.append(f"migrates {self.migrated_per_layer} per window ({100 * self.tokens_left:.0f} % left)")
        return ", ".join(parts)


LAYOUT_FIELDS = tuple(field.name for field in fields(TokenLayout))
# The layout keys of a row without a layout: the input size 0 (the store's key columns are NOT NULL), the rest None.
NO_LAYOUT: dict[str, Any] = {**dict.fromkeys(LAYOUT_FIELDS), "input_h": 0, "input_w": 0}


@dataclass(frozen=True)
class MetricRecord:
    """One metric value: ``name`` of ``task`` on ``dataset``/``split`` at training ``step`` (0 for a final
    value). ``model``/``variant`` are ``''`` when the value is not per model or acceleration variant.

    Any task name is a valid row (pre-training's rows are ``pretrain``); the fine-tunes write ``TASKS``.
    ``layout``: the input size and acceleration layout the value was measured at (None when the value is
    not one variant's measurement, e.g. a training loss). Raises ``ValueError`` for an empty text key, a
    step that is not an integer or a value that is not a finite number; ``step`` and ``value`` are kept as
    ``int`` and ``float``."""

    task: str
    dataset: str
    split: str
    name: str
    value: float
    step: int = 0
    model: str = ""
    variant: str = ""
    layout: TokenLayout | None = None

    def __post_init__(self) -> None:
        _check_layout(self.layout, f"metric {self.task}/{self.name} of {self.variant or 'no variant'}")
        for key in ("task", "dataset", "split", "name"):
            _text(getattr(self, key), f"metric {key}", required=True)
        for key in ("model", "variant"):
            _text(getattr(self, key), f"metric {key}", required=False)
        what = f"metric {self.task}/{self.dataset}/{self.split}/{self.name} at step {self.step}"
        object.__setattr__(self, "step", _integer(self.step, f"{what}: step"))
        object.__setattr__(self, "value", _finite(self.value, f"{what}: value"))

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)


@dataclass(frozen=True)
class BenchmarkRecord:
    """One throughput measurement of ``model`` under acceleration ``variant``: images per second at
    ``batch_size`` and ``resolution``² px on ``device`` in ``dtype``, with the batch-1 latency (ms), the
    peak memory (MB) and the GFLOPs per image when measured. The store derives the speed-up from the
    ``baseline`` row; ``layout`` is what stage 3 ran at that resolution under that variant (its input
    size must be ``resolution``²). Raises ``ValueError`` for an empty text key, a non-integer size, a
    value that is not a finite number, a non-positive throughput or a layout of another size."""

    model: str
    variant: str
    resolution: int
    batch_size: int
    images_per_s: float
    device: str
    latency_ms: float | None = None
    memory_mb: float | None = None
    gflops: float | None = None
    dtype: str = "float32"
    layout: TokenLayout | None = None

    def __post_init__(self) -> None:
        for key in ("model", "variant", "device", "dtype"):
            _text(getattr(self, key), f"benchmark {key}", required=True)
        what = f"benchmark {self.model}/{self.variant}"
        for key in ("resolution", "batch_size"):
            object.__setattr__(self, key, _integer(getattr(self, key), f"{what}: {key}"))
        object.__setattr__(self, "images_per_s", _finite(self.images_per_s, f"{what}: images_per_s"))
        if self.images_per_s <= 0:
            raise ValueError(f"{what}: images_per_s must be positive, got {self.images_per_s}")
        for key in ("latency_ms", "memory_mb", "gflops"):
            object.__setattr__(self, key, _optional_finite(getattr(self, key), f"{what}: {key}"))
        _check_layout(self.layout, what)
        if self.layout is not None and (self.layout.input_h, self.layout.input_w) != (self.resolution,) * 2:
            raise ValueError(f"{what}: its layout is of a {self.layout.size} input, the benchmark timed "
                             f"{self.resolution}×{self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)


def _check_layout(layout: Any, what: str) -> None:
    if layout is not None and not isinstance(layout, TokenLayout):
        raise ValueError(f"{what}: layout must be an itpn.records.TokenLayout or None, got {layout!r}")


def _flat(record: MetricRecord | BenchmarkRecord) -> dict[str, Any]:
    """The record as a dict whose layout is spread into the ``LAYOUT_FIELDS`` keys (``NO_LAYOUT`` without one)."""
    row = {field.name: getattr(record, field.name) for field in fields(record) if field.name != "layout"}
    return {**row, **(record.layout.to_dict() if record.layout is not None else NO_LAYOUT)}


RecordT = TypeVar("RecordT", MetricRecord, BenchmarkRecord)


def as_record(record_type: type[RecordT], row: RecordT | Mapping[str, Any]) -> RecordT:
    """``row`` as a ``record_type``: a record is kept, a mapping (a JSON row, ``to_dict``'s output) is read by
    key, the layout from its ``LAYOUT_FIELDS`` keys (none without an input size); keys with defaults may be
    left out. Raises ``ValueError`` naming unknown or missing keys, ``TypeError`` for
    anything else."""
    if isinstance(row, record_type):
        return row
    if not isinstance(row, Mapping):
        raise TypeError(f"expected a {record_type.__name__} or a mapping, got {type(row).__name__}")
    allowed = ({field.name for field in fields(record_type)} - {"layout"}) | set(LAYOUT_FIELDS)
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise ValueError(f"{record_type.__name__} got unknown keys {unknown}; allowed keys are {sorted(allowed)}")
    values = {key: value for key, value in row.items() if key not in LAYOUT_FIELDS}
    try:
        return record_type(**values, layout=TokenLayout.from_mapping(row))
    except TypeError as exc:
        raise ValueError(f"{record_type.__name__} {dict(row)!r} is incomplete: {exc}") from exc


def _fine_tune_rows(rows: Iterable[MetricRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    records = [as_record(MetricRecord, row) for row in rows]
    for record in records:
        if record.task not in TASKS:
            raise ValueError(f"unknown task {record.task!r}; the fine-tuning tasks are {TASKS}")
    return [record.to_dict() for record in records]


def write_metrics(output_url: str, rows: Iterable[MetricRecord | Mapping[str, Any]]) -> str:
    """Write a fine-tune's final metric rows to ``<output_url>/metrics.json`` (atomically on local disks)
    and return that URL. Raises ``ValueError`` for a row that is not valid or whose task is not in ``TASKS``."""
    url = join_url(output_url, "metrics.json")
    write_atomically(url, json.dumps(_fine_tune_rows(rows), indent=2).encode())
    return url


def read_rows(url: str) -> list[dict[str, Any]]:
    """The metric rows of a fine-tune's ``metrics.json`` or ``curve.jsonl`` (any fsspec URL), as dicts."""
    with fsspec.open(url, "r") as handle:
        text = handle.read()
    if url.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def read_metrics_jsonl(path: str | Path, *, task: str, dataset: str, split: str = "train", model: str = "",
                       variant: str = "", step_key: str = "step") -> list[MetricRecord]:
    """The metric rows of a metrics log (pre-training's ``metrics.jsonl``): one JSON object per line, the
    step plus values. Every numeric key but the step becomes a metric of that name at that step; text
    values (timestamps, tags) are not metrics and are left out. ``path`` may be any fsspec URL. A line that
    is not a JSON object with a step, or a value that is not finite, raises ``ValueError`` naming file and line.
    """
    rows: list[MetricRecord] = []
    with fsspec.open(str(path), "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where} is not valid JSON: {exc}") from exc
            if not isinstance(record, dict) or step_key not in record:
                raise ValueError(f"{where} must be a JSON object with a {step_key!r} key")
            step = _integer(record[step_key], f"{where}: {step_key}")
            for name, value in record.items():
                if name == step_key or isinstance(value, str | bool | list | dict) or value is None:
                    continue
                rows.append(MetricRecord(task, dataset, split, name, _finite(value, f"{where}: {name}"), step,
                                         model, variant))
    return rows
