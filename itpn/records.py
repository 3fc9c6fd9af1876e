"""Result rows, defined once: the metric row, the benchmark row, the task names and the files rows travel in.

A fine-tune writes ``metrics.json`` (a JSON list of metric rows) and ``curve.jsonl`` (one metric row a
line); pre-training logs ``metrics.jsonl`` (a step and its values a line, ``read_metrics_jsonl``); the
acceleration benchmark returns benchmark rows. The flows read these files and hand the rows to the
results store (``services.store``), which keeps exactly these fields. It imports no torch
(the store, the dashboard and the flows read it without loading a model library).
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


@dataclass(frozen=True)
class MetricRecord:
    """One metric value: ``name`` of ``task`` on ``dataset``/``split`` at training ``step`` (0 for a final
    value). ``model``/``variant`` are ``''`` when the value is not per model or acceleration variant.

    Any task name is a valid row (pre-training's rows are ``pretrain``); the fine-tunes write ``TASKS``.
    Raises ``ValueError`` for an empty text key, a step that is not an integer or a value that is not a
    finite number; ``step`` and ``value`` are kept as ``int`` and ``float``."""

    task: str
    dataset: str
    split: str
    name: str
    value: float
    step: int = 0
    model: str = ""
    variant: str = ""

    def __post_init__(self) -> None:
        for key in ("task", "dataset", "split", "name"):
            _text(getattr(self, key), f"metric {key}", required=True)
        for key in ("model", "variant"):
            _text(getattr(self, key), f"metric {key}", required=False)
        what = f"metric {self.task}/{self.dataset}/{self.split}/{self.name} at step {self.step}"
        object.__setattr__(self, "step", _integer(self.step, f"{what}: step"))
        object.__setattr__(self, "value", _finite(self.value, f"{what}: value"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchmarkRecord:
    """One throughput measurement of ``model`` under acceleration ``variant``: images per second at
    ``batch_size`` and ``resolution``² px on ``device`` in ``dtype``, with the batch-1 latency (ms), the
    peak memory (MB) and the GFLOPs per image when measured. The store derives the speed-up from the
    ``baseline`` row. Raises ``ValueError`` for an empty text key, a non-integer size, a value that is not
    a finite number or a non-positive throughput."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RecordT = TypeVar("RecordT", MetricRecord, BenchmarkRecord)


def as_record(record_type: type[RecordT], row: RecordT | Mapping[str, Any]) -> RecordT:
    """``row`` as a ``record_type``: a record is kept, a mapping (a JSON row) is read by key; keys with
    defaults may be left out. Raises ``ValueError`` naming unknown or missing keys, ``TypeError`` for
    anything else."""
    if isinstance(row, record_type):
        return row
    if not isinstance(row, Mapping):
        raise TypeError(f"expected a {record_type.__name__} or a mapping, got {type(row).__name__}")
    allowed = {field.name for field in fields(record_type)}
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise ValueError(f"{record_type.__name__} got unknown keys {unknown}; allowed keys are {sorted(allowed)}")
    try:
        return record_type(**row)
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
