"""``StageResult``: what a stage leaves in its folder, ``result.json`` (its outputs, metric rows, training
curves, benchmark rows, the cache key it ran under and when it ran), and beside it what DVC reads:
``metrics.json`` (flat) and ``curves.csv``."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from itpn.files import write_atomically


@dataclass
class StageResult:
    stage: str
    key: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)  # {"url", "task", "dataset", "split", "model"...}
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    hardware: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""  # when the stage really ran (ISO 8601, UTC); a cached result keeps its run's times
    finished_at: str = ""

    @classmethod
    def read(cls, path: Path) -> "StageResult":
        """The result in ``path`` (a ``result.json``)."""
        return cls(**json.loads(path.read_text()))

    def write(self, directory: Path) -> Path:
        """``metrics.json``, ``curves.csv`` and last ``result.json`` in ``directory``, each atomically; returns
        the last. ``result.json`` is what makes the stage current (``flows.stages.run``), so a kill at any
        moment leaves either no result (the stage runs again) or a result whose DVC files are whole."""
        directory.mkdir(parents=True, exist_ok=True)
        flat = {f"{m['task']}/{m['dataset']}/{m['split']}/{m['name']}"
                + (f"/{m['variant']}" if m.get("variant") else ""): m["value"] for m in self.metrics}
        write_atomically(str(directory / "metrics.json"), json.dumps(flat, indent=2, sort_keys=True).encode())
        write_curves_csv(self.curves, directory / "curves.csv")
        path = directory / "result.json"
        write_atomically(str(path), json.dumps(asdict(self), indent=2).encode())
        return path


def write_curves_csv(curves: list[dict[str, Any]], path: Path) -> None:
    """All training curves of a stage as one CSV (``curve``, ``step`` and the logged values)."""
    import fsspec

    rows: list[dict[str, Any]] = []
    for curve in curves:
        name = f"{curve['task']}/{curve['dataset']}"
        by_step: dict[int, dict[str, Any]] = {}
        with fsspec.open(curve["url"], "rt") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                if curve.get("format") == "rows":  # one metric per line: pivot to one row per step
                    by_step.setdefault(record["step"], {"curve": name, "step": record["step"]})[
                        record["name"]] = record["value"]
                else:
                    rows.append({"curve": name, **{k: v for k, v in record.items() if isinstance(v, (int, float))}})
        rows.extend(by_step.values())
    columns = ["curve", "step"] + sorted({k for row in rows for k in row} - {"curve", "step"})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(str(path), text.getvalue().encode())


def hardware() -> dict[str, Any]:
    """The machine a stage ran on: platform, Python, torch, CPUs and GPUs (torch imported here: the
    orchestrator's processes that only read results need not load it)."""
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info
