"""The Prefect flows. ``experiment`` chains the others the way the paper does: prepare the data,
pre-train once, fine-tune every task from the same integral checkpoint, benchmark every
acceleration variant, and record everything in the results store."""
from __future__ import annotations

from prefect import flow

from .params import FINETUNE_TASKS, PipelineParams
from .stages import StageResult
from .tasks import execute, resolve


@flow(name="prepare_data", log_prints=True)
def prepare_data(params_file: str = "params.yaml") -> StageResult:
    return execute("prepare_data", resolve(params_file))


@flow(name="pretrain", log_prints=True)
def pretrain(params_file: str = "params.yaml") -> StageResult:
    return execute("pretrain", resolve(params_file))


@flow(name="finetune_classification", log_prints=True)
def finetune_classification(params_file: str = "params.yaml") -> StageResult:
    return execute("finetune_classification", resolve(params_file))


@flow(name="finetune_detection", log_prints=True)
def finetune_detection(params_file: str = "params.yaml") -> StageResult:
    return execute("finetune_detection", resolve(params_file))


@flow(name="finetune_segmentation", log_prints=True)
def finetune_segmentation(params_file: str = "params.yaml") -> StageResult:
    return execute("finetune_segmentation", resolve(params_file))


@flow(name="finetune_rotated", log_prints=True)
def finetune_rotated(params_file: str = "params.yaml") -> StageResult:
    return execute("finetune_rotated", resolve(params_file))


@flow(name="benchmark_acceleration", log_prints=True)
def benchmark_acceleration(params_file: str = "params.yaml") -> StageResult:
    return execute("benchmark_acceleration", resolve(params_file))


FINETUNE_FLOWS = {
    "classification": finetune_classification,
    "detection": finetune_detection,
    "segmentation": finetune_segmentation,
    "rotated": finetune_rotated,
}


@flow(name="experiment", log_prints=True)
def experiment(params_file: str = "params.yaml") -> dict[str, StageResult]:
    params = PipelineParams.load(params_file)
    results = {"prepare_data": prepare_data(params_file), "pretrain": pretrain(params_file)}
    for task in FINETUNE_TASKS:
        if task in params.finetune:
            results[f"finetune_{task}"] = FINETUNE_FLOWS[task](params_file)
    results["benchmark_acceleration"] = benchmark_acceleration(params_file)
    return results
