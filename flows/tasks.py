"""Prefect tasks: run one stage in a subprocess (torchrun for several GPUs), record it in the store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from services.store import open_writer

from .params import PipelineParams
from .record import record_stage_result
from .stages import REPO_ROOT, StageResult

# Stages torchrun launches on experiment.gpus processes (the OpenMMLab ones through mmengine's
# "pytorch" launcher); data preparation and the single-device benchmark run in one process.
DISTRIBUTED_STAGES = {"pretrain", "finetune_classification", "finetune_detection", "finetune_segmentation",
                      "finetune_rotated"}


def stage_command(stage: str, params_file: str, gpus: int) -> list[str]:
    if gpus > 1 and stage in DISTRIBUTED_STAGES:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m",
                "flows.stages", stage, "--params", params_file]
    return [sys.executable, "-m", "flows.stages", stage, "--params", params_file]


@task(task_run_name="run {stage}", cache_policy=NO_CACHE)
def run_stage(stage: str, params_file: str) -> StageResult:
    """The stage in its own process; it skips itself when its inputs and code are unchanged."""
    params = PipelineParams.load(params_file)
    logger = get_run_logger()
    command = stage_command(stage, params_file, params.experiment.gpus)
    logger.info("%s", " ".join(command))
    process = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             capture_output=True, text=True)
    if process.returncode != 0:
        tail = "\n".join((process.stderr or process.stdout).strip().splitlines()[-25:])
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}):\n{tail}")
    return StageResult.read(params.stage_dir(stage) / "result.json")


@task(task_run_name="record {stage}", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NO_CACHE)
def record_stage(stage: str, params_file: str, result: StageResult | None, error: str | None = None) -> dict:
    with open_writer() as writer:
        return record_stage_result(writer, PipelineParams.load(params_file), stage, result,
                                   flow_run_id=str(flow_run.id) if flow_run.id else None, error=error)


def execute(stage: str, params_file: str) -> StageResult:
    """Run and record a stage; a failure is recorded as a failed run, then re-raised."""
    try:
        result = run_stage(stage, params_file)
    except Exception as error:
        record_stage(stage, params_file, None, error=str(error))
        raise
    record_stage(stage, params_file, result)
    return result


def resolve(params_file: str | Path) -> str:
    return str(Path(params_file).resolve())
