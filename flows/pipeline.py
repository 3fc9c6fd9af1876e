"""The Prefect flows. One flow per stage; ``experiment``, which chains them the way the paper does:
prepare the data, pre-train once, fine-tune every task from the same integral checkpoint (the
fine-tunes at once), benchmark every acceleration variant, record everything in the results store;
and ``sweep``, many experiments sharing their pre-trainings."""
from __future__ import annotations

import os
from typing import Any

from prefect import Flow, flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from .outline import FINETUNE_TASKS, finetune_stage
from .params import PipelineParams
from .stages.result import StageResult
from .sweep import SweepPoint, plan_sweep
from .tasks import execute, resolve, stage_job

# Threads that wait for stages; the concurrency limits, not this, bound how many run at once.
MAX_PARALLEL = 32


def stage_flow(stage: str, description: str) -> Flow:
    """A flow that runs ``stage`` in its own process and records it in the store."""

    def run(params_file: str = "params.yaml") -> StageResult:
        params_file = resolve(params_file)
        return execute(stage, params_file, PipelineParams.load(params_file))

    return flow(run, name=stage, description=description, log_prints=True)


prepare_data = stage_flow("prepare_data", "Generate or find the data sets, validate them, write their manifests.")
pretrain = stage_flow("pretrain", "Integral pre-training (MIM + multi-stage MFM); exports backbone + pyramid.")
finetune_classification = stage_flow("finetune_classification",
                                     "ImageNet fine-tuning, then every acceleration variant on the same weights.")
finetune_detection = stage_flow("finetune_detection", "COCO detection and instance segmentation (OpenMMLab).")
finetune_segmentation = stage_flow("finetune_segmentation", "ADE20K semantic segmentation (OpenMMLab).")
finetune_rotated = stage_flow("finetune_rotated", "DOTA rotated detection (OpenMMLab).")
benchmark_acceleration = stage_flow("benchmark_acceleration", "Every acceleration variant against the baseline.")

def cpu_threads(params: PipelineParams, parallel: int) -> int | None:
    """CPU threads per stage when ``parallel`` training stages share the cores (CPU only)."""
    if params.experiment.device.startswith("cuda") or parallel < 2:
        return None
    return max(1, (os.cpu_count() or 1) // min(parallel, params.experiment.cpu_jobs))


def fan_out(jobs: dict[str, tuple[str, str, PipelineParams]], dispatch: str,
            threads: int | None = None) -> dict[str, StageResult]:
    """Run ``{label: (stage, params_file, its parameters)}`` at once, each holding its concurrency slots (so
    no more run than the limit allows); wait for all, then raise naming every one that failed."""
    futures = {label: stage_job.submit(stage, params_file, params, dispatch, threads)
               for label, (stage, params_file, params) in jobs.items()}
    wait(list(futures.values()))
    failed = {label: future.state.message for label, future in futures.items() if not future.state.is_completed()}
    if failed:
        raise RuntimeError("failed: " + "; ".join(f"{label}: {message}" for label, message in failed.items()))
    return {label: future.result() for label, future in futures.items()}


@flow(name="experiment", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
def experiment(params_file: str = "params.yaml", dispatch: str = "local") -> dict[str, StageResult]:
    """Prepare the data and pre-train; then every configured fine-tune at once (bounded by the
    training concurrency limit: one per GPU, ``experiment.cpu_jobs`` on CPU); then the benchmark,
    alone, so its timings are not shared with training. ``dispatch="deployments"`` runs each stage
    as a run of its deployment (CPU or GPU work pool) instead of in this process."""
    params_file = resolve(params_file)
    params = PipelineParams.load(params_file)
    results = {stage: stage_job(stage, params_file, params, dispatch) for stage in ("prepare_data", "pretrain")}
    finetunes = {finetune_stage(task): (finetune_stage(task), params_file, params) for task in FINETUNE_TASKS
                 if task in params.finetune}
    results.update(fan_out(finetunes, dispatch, cpu_threads(params, len(finetunes))))
    results["benchmark_acceleration"] = stage_job("benchmark_acceleration", params_file, params, dispatch)
    return results


@flow(name="sweep", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
def sweep(params_file: str = "params.yaml", name: str = "sweep", models: list[str] | None = None,
          variants: list[str] | None = None, seeds: list[int] | None = None,
          recipes: dict[str, dict[str, Any]] | None = None, tasks: list[str] | None = None,
          dispatch: str = "local") -> dict[str, dict[str, StageResult]]:
    """Experiments over models × acceleration variants × seeds × pre-training recipes (``flows.sweep``):
    data prepared once, one pre-training per (model, recipe) shared by its points' fine-tunes and
    reused while its key is unchanged, every point's fine-tunes at once (bounded by the training
    concurrency limit), one benchmark per model. Returns each point's stage results."""
    points = plan_sweep(params_file, name, models, variants, seeds, recipes, tasks)
    params = {point.params_file: PipelineParams.load(point.params_file) for point in points}
    groups: dict[tuple[str, str], SweepPoint] = {}  # the first point of each (model, recipe), and of each model
    models_first: dict[str, SweepPoint] = {}
    for point in points:
        groups.setdefault(point.group, point)
        models_first.setdefault(point.model, point)
    first = points[0]
    print(f"sweep {name}: {len(points)} experiments, {len(groups)} pre-training(s): "
          + ", ".join(point.name for point in points))
    shared = {"prepare_data": stage_job("prepare_data", first.params_file, params[first.params_file], dispatch)}
    pretrained = fan_out({f"pretrain {model} {recipe}": ("pretrain", point.params_file, params[point.params_file])
                          for (model, recipe), point in groups.items()}, dispatch)
    finetunes = {f"{point.name} {finetune_stage(task)}": (finetune_stage(task), point.params_file,
                                                          params[point.params_file])
                 for point in points for task in point.tasks}
    trained = fan_out(finetunes, dispatch, cpu_threads(params[first.params_file], len(finetunes)))
    benchmarked = {model: stage_job("benchmark_acceleration", point.params_file, params[point.params_file], dispatch)
                   for model, point in models_first.items()}
    results = {}
    for point in points:
        results[point.name] = {"prepare_data": shared["prepare_data"],
                               "pretrain": pretrained[f"pretrain {point.model} {point.recipe}"],
                               **{finetune_stage(task): trained[f"{point.name} {finetune_stage(task)}"]
                                  for task in point.tasks},
                               "benchmark_acceleration": benchmarked[point.model]}
    return results
