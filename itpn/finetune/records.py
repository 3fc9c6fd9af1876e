"""Metric rows and training curves as the results store takes them, and the acceleration switch.

Every fine-tune writes ``metrics.json`` (a list of rows) and ``curve.jsonl`` (one row per line);
a row has the keys of ``services.store.writer.MetricRow``: task, dataset, split, name, value,
step, model, variant. Task names and main metric names follow the store's ``MAIN_METRICS``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import fsspec

from itpn.files import join_url, write_atomically

TASKS = ("classification", "detection", "segmentation", "rotated_detection")


@dataclass(frozen=True)
class MetricRecord:
    task: str
    dataset: str
    split: str
    name: str
    value: float
    step: int = 0
    model: str = ""
    variant: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; the tasks are {TASKS}")
        if not math.isfinite(float(self.value)):
            raise ValueError(f"metric {self.task}/{self.name} is {self.value}: the run diverged or evaluated nothing")

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["value"] = float(row["value"])
        return row


def write_json(url: str, payload: Any) -> str:
    """Write ``payload`` as JSON to an fsspec URL (atomically on local disks); returns the URL."""
    write_atomically(url, json.dumps(payload, indent=2).encode())
    return url


def write_metrics(output_url: str, rows: Iterable[MetricRecord | dict[str, Any]]) -> str:
    """``<output_url>/metrics.json``: every final metric of a run."""
    records = [row.to_dict() if isinstance(row, MetricRecord) else MetricRecord(**row).to_dict() for row in rows]
    return write_json(join_url(output_url, "metrics.json"), records)


class CurveWriter:
    """Appends training-curve rows to ``<output_url>/curve.jsonl`` as they come (kept across a resume)."""

    def __init__(self, output_url: str, *, restart: bool):
        self.url = join_url(output_url, "curve.jsonl")
        filesystem, path = fsspec.core.url_to_fs(self.url)
        filesystem.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if restart or not filesystem.exists(path):
            with filesystem.open(path, "w"):
                pass

    def write(self, rows: Iterable[MetricRecord]) -> None:
        with fsspec.open(self.url, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_dict()) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows written after ``step`` (work done after the checkpoint a run resumes from)."""
        with fsspec.open(self.url, "r") as handle:
            kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= step]
        with fsspec.open(self.url, "w") as handle:
            handle.writelines(kept)


def read_rows(url: str) -> list[dict[str, Any]]:
    """Rows of a ``metrics.json`` or ``curve.jsonl`` file."""
    with fsspec.open(url, "r") as handle:
        text = handle.read()
    if url.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)
