"""Prefect tasks: run one stage in a subprocess (it launches torchrun itself for several GPUs) while it
holds its concurrency slots, record it in the store with its real start and end, publish its results
as a Prefect artifact; and ``stage_job``, the unit the flows fan out. Every task runs with ``NO_CACHE``:
a stage's one cache key is ``flows.stages.cache.stage_key`` (its docstring says why)."""
from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from services.store import open_writer

from .outline import REPO_ROOT, STAGE_NAMES
from .params import PipelineParams
from .record import record_stage_result
from .report import publish_stage
from .resources import stage_resources
from .stages.cache import stage_key
from .stages.cli import stage_command
from .stages.result import StageResult

# Each stage's deployment in prefect.yaml (flow name/deployment name), for dispatch="deployments".
DEPLOYMENTS = {stage: f"{stage}/{stage}" for stage in STAGE_NAMES}
DISPATCHES = ("local", "deployments")


class StageFailed(RuntimeError):
    """A stage's process failed; carries when it ran, so the failed attempt is recorded with real times."""

    def __init__(self, message: str, started_at: datetime, finished_at: datetime) -> None:
        super().__init__(message)
        self.started_at, self.finished_at = started_at, finished_at


@task(task_run_name="run {stage}", cache_policy=NO_CACHE)
def run_stage_process(stage: str, params_file: str, params: PipelineParams, threads: int | None = None) -> StageResult:
    """``python -m flows.stages <stage>`` on ``params_file`` (``params``: the same file, parsed); the process
    skips the stage when its inputs and code are unchanged. ``threads`` caps its CPU threads
    (OMP_NUM_THREADS) when several stages share the cores."""
    logger = get_run_logger()
    command = stage_command(stage, params_file, 1)  # the stage re-launches itself under torchrun for gpus > 1
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    with stage_resources(stage, params) as resources:
        env.update(resources)
        logger.info("%s%s", " ".join(command), "".join(f" ({k}={v})" for k, v in resources.items()))
        started = datetime.now(UTC)
        process = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        finished = datetime.now(UTC)
    if process.returncode != 0:
        tail = "\n".join((process.stderr or process.stdout).strip().splitlines()[-25:])
        raise StageFailed(f"stage {stage} failed (exit {process.returncode}):\n{tail}", started, finished)
    return StageResult.read(params.stage_dir(stage) / "result.json")


@task(task_run_name="record {stage}", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NO_CACHE)
def record_stage(stage: str, params: PipelineParams, result: StageResult | None,
                 error: StageFailed | None = None) -> dict:
    """The stage's result (or its failed attempt, ``error``) into the store; a result is also published as
    a Prefect artifact."""
    run_id = str(flow_run.id) if flow_run.id else None
    if result is not None:
        with open_writer() as writer:
            recorded = record_stage_result(writer, params, stage, result, flow_run_id=run_id)
        publish_stage(params, stage, result, recorded)
        return recorded
    try:  # the key the stage ran under, so its later success is the same run
        key = stage_key(stage, params)
    except Exception:  # noqa: BLE001 - e.g. an unreadable upstream result: still record the failure
        key = "unkeyed"
    with open_writer() as writer:
        return record_stage_result(writer, params, stage, None, flow_run_id=run_id, error=str(error), key=key,
                                   started_at=error.started_at if error else None,
                                   finished_at=error.finished_at if error else None)


def execute(stage: str, params_file: str, params: PipelineParams, threads: int | None = None) -> StageResult:
    """Run and record a stage; a failure is recorded as a failed attempt of its run, then re-raised."""
    try:
        result = run_stage_process(stage, params_file, params, threads)
    except StageFailed as error:
        record_stage(stage, params, None, error=error)
        raise
    record_stage(stage, params, result)
    return result


@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def stage_job(stage: str, params_file: str, params: PipelineParams, dispatch: str = "local",
              threads: int | None = None) -> StageResult:
    """One stage of a flow: run here (``local``), or as a run of the stage's deployment (``deployments``:
    a worker of its work pool, CPU or GPU, takes it; the flow waits for it)."""
    if dispatch == "local":
        return execute(stage, params_file, params, threads)
    if dispatch != "deployments":
        raise ValueError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
    run = run_deployment(DEPLOYMENTS[stage], parameters={"params_file": params_file}, timeout=None)
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise RuntimeError(f"stage {stage} (flow run {run.name}, deployment {DEPLOYMENTS[stage]}) ended {state}: "
                           f"{run.state.message if run.state else ''}")
    return StageResult.read(params.stage_dir(stage) / "result.json")


def resolve(params_file: str | Path) -> str:
    """The parameters file's absolute path (stages run in the repository root)."""
    return str(Path(params_file).resolve())
