"""Write a stage's ``result.json`` into the results store, in the run that stage owns."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from itpn.records import MetricRecord, read_metrics_jsonl, read_rows
from services.store import ResultsWriter, open_writer

from .params import PipelineParams
from .outline import REPO_ROOT, STAGE_NAMES as STAGES
from .stages.result import StageResult, hardware


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def result_times(params: PipelineParams, stage: str, result: StageResult) -> tuple[datetime, datetime]:
    """When the stage really ran; a result written before times were kept: its file's time and length."""
    if result.started_at and result.finished_at:
        return datetime.fromisoformat(result.started_at), datetime.fromisoformat(result.finished_at)
    path = params.stage_dir(stage) / "result.json"
    finished = datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.exists() else datetime.now(UTC)
    return finished - timedelta(seconds=result.seconds), finished


def result_rows(result: StageResult) -> tuple[list[MetricRecord | dict[str, Any]], list[dict[str, Any]]]:
    """The stage's metric rows (final values and curves: mappings or ``MetricRecord``) and benchmark rows
    (mappings with ``BenchmarkRecord``'s keys), as the store takes them."""
    metrics: list[MetricRecord | dict[str, Any]] = list(result.metrics)
    for curve in result.curves:
        if curve.get("format") == "rows":
            metrics += read_rows(curve["url"])
        else:  # one record per step with several values (pre-training's metrics.jsonl)
            metrics += read_metrics_jsonl(curve["url"], task=curve["task"], dataset=curve["dataset"],
                                          split=curve.get("split", "train"), model=curve.get("model", ""),
                                          variant=curve.get("variant", ""))
    return metrics, list(result.benchmarks)


def record_stage_result(writer: ResultsWriter, params: PipelineParams, stage: str, result: StageResult | None,
                        *, flow_run_id: str | None = None, error: str | None = None, key: str | None = None,
                        started_at: datetime | None = None, finished_at: datetime | None = None) -> dict[str, Any]:
    """One store run per (experiment, stage, cache key), holding exactly the rows of its newest attempt.

    ``result``: a finished attempt, with the times it ran (a cached result is the attempt that made
    it: recording it again changes nothing). ``result=None``: a failed attempt of the run ``key``
    names, with ``error`` and the failed process's ``started_at`` / ``finished_at``; the run is
    marked failed until an attempt succeeds."""
    experiment = params.record_name(stage)
    common = {"flow_name": stage, "flow_run_id": flow_run_id, "git_commit": git_commit(),
              "params": params.model_dump(), "sweep": params.experiment.sweep}
    if result is None:
        now = datetime.now(UTC)
        return writer.record_run(experiment, f"{experiment}:{stage}:{key or 'unkeyed'}", status="failed",
                                 error=error or "failed", started_at=started_at or now,
                                 finished_at=finished_at or now, hardware=hardware(), **common)
    started, finished = result_times(params, stage, result)
    metrics, benchmarks = result_rows(result)
    return writer.record_run(experiment, f"{experiment}:{stage}:{result.key}", started_at=started,
                             finished_at=finished, metrics=metrics, benchmarks=benchmarks,
                             artifacts={name: url for name, url in result.outputs.items() if url},
                             hardware=result.hardware, **common)


def record_all(params: PipelineParams) -> list[dict[str, Any]]:
    """Every stage result under the output directory, into the store (the DVC pipeline's last stage)."""
    recorded = []
    with open_writer() as writer:
        for stage in STAGES:
            path = params.stage_dir(stage) / "result.json"
            if path.exists():
                recorded.append({"stage": stage, **record_stage_result(writer, params, stage, StageResult.read(path))})
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.record", description=record_all.__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    for row in record_all(PipelineParams.load(args.params)):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
