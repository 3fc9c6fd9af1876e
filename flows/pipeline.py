"""The Prefect flows. One flow per stage, and ``experiment``, which chains them the way the paper
does: prepare the data, pre-train once, fine-tune every task from the same integral checkpoint,
benchmark every acceleration variant, and record everything in the results store."""
from __future__ import annotations

from prefect import Flow, flow

from .params import FINETUNE_TASKS, PipelineParams
from .stages import StageResult
from .tasks import execute, resolve


def stage_flow(stage: str, description: str) -> Flow:
    """A flow that runs ``stage`` in its own process and records it in the store."""

    def run(params_file: str = "params.yaml") -> StageResult:
        return execute(stage, resolve(params_file))

    return flow(run, name=stage, description=description, log_prints=True)


prepare_data = stage_flow("prepare_data", "Generate or find the data sets, validate them, write their manifests.")
pretrain = stage_flow("pretrain", "Integral pre-training (MIM + multi-stage MFM); exports backbone + pyramid.")
finetune_classification = stage_flow("finetune_classification",
                                     "ImageNet fine-tuning, then every acceleration variant on the same weights.")
finetune_detection = stage_flow("finetune_detection", "COCO detection and instance segmentation (OpenMMLab).")
finetune_segmentation = stage_flow("finetune_segmentation", "ADE20K semantic segmentation (OpenMMLab).")
finetune_rotated = stage_flow("finetune_rotated", "DOTA rotated detection (OpenMMLab).")
benchmark_acceleration = stage_flow("benchmark_acceleration", "Every acceleration variant against the baseline.")

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
