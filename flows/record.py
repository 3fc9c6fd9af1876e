"""Write a stage's ``result.json`` into the results store, in the run that stage owns."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import fsspec

from services.store import ResultsWriter, open_writer

from .params import PipelineParams


def read_rows(url: str) -> list[dict[str, Any]]:
    """Metric rows of a JSONL curve written one metric per line (the fine-tunes' ``curve.jsonl``)."""
    with fsspec.open(url, "rt") as lines:
        return [json.loads(line) for line in lines if line.strip()]
from .stages import REPO_ROOT, STAGES, StageResult, hardware

BENCHMARK_FIELDS = ("model", "variant", "resolution", "batch_size", "images_per_s", "device", "latency_ms",
                    "memory_mb", "gflops", "dtype")


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def benchmark_row(row: dict[str, Any]) -> dict[str, Any]:
    """A benchmark JSON row in the store's shape (resolution "HxW" -> its height)."""
    resolution = row["resolution"]
    if isinstance(resolution, str):
        resolution = int(resolution.split("x")[0])
    return {**{k: row[k] for k in BENCHMARK_FIELDS if k in row}, "resolution": resolution}


def record_result(writer: ResultsWriter, run_id: int, result: StageResult) -> dict[str, int]:
    """Metrics, curves, benchmarks and artifact URLs of one stage; each write is idempotent."""
    counts = {"metrics": writer.add_metrics(run_id, result.metrics) if result.metrics else 0}
    counts["curve_points"] = sum(
        writer.add_metrics(run_id, read_rows(curve["url"])) if curve.get("format") == "rows" else
        writer.ingest_metrics_jsonl(run_id, curve["url"], task=curve["task"], dataset=curve["dataset"],
                                    split=curve.get("split", "train"), model=curve.get("model", ""),
                                    variant=curve.get("variant", ""))
        for curve in result.curves)
    counts["benchmarks"] = writer.add_benchmarks(run_id, [benchmark_row(r) for r in result.benchmarks]) \
        if result.benchmarks else 0
    for name, url in result.outputs.items():
        if url:
            writer.register_artifact(run_id, url, name=name)
    return counts


def record_stage_result(writer: ResultsWriter, params: PipelineParams, stage: str, result: StageResult | None,
                        *, flow_run_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    """One store run per (experiment, stage, cache key): a re-run replaces its rows, adds no copies;
    a failed stage leaves its run marked failed with the error."""
    run_id = writer.start_run(params.experiment.name,
                              f"{params.experiment.name}:{stage}:{result.key if result else 'failed'}",
                              flow_name=stage, flow_run_id=flow_run_id, git_commit=git_commit(),
                              params=params.model_dump(), hardware=result.hardware if result else hardware())
    if result is None:
        writer.fail_run(run_id, error or "failed")
        return {"run_id": run_id, "status": "failed"}
    counts = record_result(writer, run_id, result)
    writer.finish_run(run_id)
    return {"run_id": run_id, "status": "completed", **counts}


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
