"""What each stage does: read its section of the parameters, call the library, return a ``StageResult``
(``flows.stages.run`` adds the key and the times and writes it). ``STAGES`` maps each stage of
``flows.outline.STAGE_NAMES``, in its order, to its body."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..outline import FINETUNE_TASKS, REPO_ROOT, finetune_stage
from ..params import OPENMMLAB_TASKS, PipelineParams
from .result import StageResult

RUNNERS = {"detection": "run_detection", "segmentation": "run_segmentation", "rotated": "run_rotated"}  # itpn.mmlab


def prepare_data(params: PipelineParams) -> StageResult:
    """Generate (or find) and validate each data set of ``data.sets``; write its manifest. Real data
    (``data.generate: false``) take no generator arguments: those given are left out, with a note.

    A generation is marked in the run folder (``generating-<kind>``) until its data set is prepared: a run
    of the same key that finds the mark was killed while generating, and regenerates over the files it
    left (the generator refuses a folder that holds files it did not finish, to spare a user's own)."""
    from itpn.data import prepare

    result = StageResult("prepare_data", key="")
    for kind, arguments in params.data.sets.items():
        url = params.data_url(kind)
        if arguments and not params.data.generate:
            result.notes.append(f"{kind}: data.generate is false, so the generator arguments {sorted(arguments)} "
                                f"are not used")
        generating = params.run_dir("prepare_data") / f"generating-{kind}"
        if params.data.generate:
            if generating.exists():
                arguments = {**arguments, "overwrite": True}
                result.notes.append(f"{kind}: generated again over what a killed run left at {url}")
            generating.touch()
        prepared = prepare(kind, url, generate=params.data.generate, strict=params.data.strict,
                           **(arguments if params.data.generate else {}))
        generating.unlink(missing_ok=True)
        result.outputs[f"{kind}_manifest"] = f"{url}/manifest.json"
        counts = prepared.manifest.get("counts", {})
        for split, count in counts.items():
            if isinstance(count, (int, float)):
                result.notes.append(f"{kind}/{split}: {count} samples")
        if prepared.report.num_skipped:
            result.notes.append(f"{kind}: skipped {prepared.report.num_skipped} bad samples "
                                f"(listed in {url}/manifest.json)")
    return result


def pretrain(params: PipelineParams) -> StageResult:
    """Integral pre-training (``itpn.pretrain``) into the stage's run folder; exports backbone + pyramid."""
    from itpn.pretrain import run_pretraining

    config = params.pretrain_config()
    outcome = run_pretraining(config)
    result = StageResult("pretrain", key="")
    result.outputs = {"export": outcome.export_url, "checkpoint": outcome.checkpoint_url or ""}
    result.curves.append({"url": outcome.metrics_url, "task": "pretrain", "dataset": "imagenet", "split": "train",
                          "model": config.model})
    result.metrics.append({"task": "pretrain", "dataset": "imagenet", "split": "train", "name": "loss",
                           "value": outcome.final_loss, "step": outcome.steps_done, "model": config.model})
    if outcome.skipped_images:
        result.notes.append(f"pretrain: skipped {outcome.skipped_images} unreadable images")
    return result


def finetune_classification(params: PipelineParams) -> StageResult:
    """ImageNet fine-tuning from the pre-training export, then the same weights under every
    ``eval_variants`` acceleration variant (accuracy and speed-up from one model)."""
    from itpn.finetune import run_classification

    section = params.finetune.get("classification", {})
    outcome = run_classification(params.classification_config(initial_weights(params, section)))
    return StageResult("finetune_classification", key="", outputs={"model": outcome.export_url},
                       metrics=outcome.metrics,
                       curves=[{"url": outcome.curve_url, "format": "rows", "task": "classification",
                                "dataset": FINETUNE_TASKS["classification"]["data"]}])


def finetune_openmmlab(task: str) -> Callable[[PipelineParams], StageResult]:
    """COCO / ADE20K / DOTA fine-tuning through the OpenMMLab adapters, from the pre-training export;
    then the fine-tuned detector or segmenter evaluated under every ``eval_variants`` variant.

    The training and each variant's evaluation leave their rows in their own folder's ``metrics.json``
    (written atomically when they finish); a run of the same key that finds one keeps it instead of
    working again, so a stage killed among its variants redoes only the evaluations cut short."""
    data_kind, stage = FINETUNE_TASKS[task]["data"], finetune_stage(task)

    def run(params: PipelineParams) -> StageResult:
        import itpn.mmlab

        section = params.finetune.get(task, {})
        config = str(REPO_ROOT / section["config"])
        backbone = {"model.backbone.model_name": params.experiment.model,
                    "model.backbone.model_kwargs": params.experiment.model_kwargs}
        options = {**backbone, **section.get("cfg_options", {})}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            options["launcher"] = "pytorch"  # under torchrun: mmengine joins its process group
        runner = getattr(itpn.mmlab, RUNNERS[task])
        run_dir = params.run_dir(stage)
        rows = finished_rows(run_dir) or runner(
            config, data_root=params.data_url(data_kind), checkpoint=initial_weights(params, section),
            work_dir=str(run_dir), output_url=str(run_dir), cfg_options=options, variant=section.get("variant"))
        trained = itpn.mmlab.checkpoints(str(run_dir))
        for variant in section.get("eval_variants", []):
            if variant != section.get("variant", "baseline"):
                evaluation = run_dir / "eval" / variant
                rows += finished_rows(evaluation) or runner(
                    config, data_root=params.data_url(data_kind), work_dir=str(evaluation),
                    output_url=str(evaluation), variant=variant, train=False,
                    cfg_options={**options, "load_from": trained[-1]})
        return StageResult(stage, key="", outputs={"checkpoint": trained[-1] if trained else ""},
                           metrics=rows,
                           curves=[{"url": f"{run_dir}/curve.jsonl", "format": "rows", "task": task,
                                    "dataset": data_kind}])

    return run


def finished_rows(folder: Path) -> list[dict[str, Any]]:
    """The metric rows a finished OpenMMLab run left in ``folder/metrics.json`` (empty when it did not
    finish). The stage's run folder belongs to its cache key (``run_folder``), so they are this run's."""
    from itpn.records import read_rows

    path = folder / "metrics.json"
    return read_rows(str(path)) if path.exists() else []


def initial_weights(params: PipelineParams, section: dict[str, Any]) -> str | None:
    """The weights a fine-tune starts from: its section's own ``pretrained`` when given (a URL, or null for
    random weights: the no-pre-training baseline of ``itpn reproduce``), else the pretrain stage's export."""
    if "pretrained" in section:
        return section["pretrained"]
    export = params.pretrain_export()
    if not export.exists():
        raise FileNotFoundError(f"no pre-training export at {export}: run the pretrain stage first "
                                f"(itpn pretrain, or dvc repro pretrain)")
    return export.as_posix()


def benchmark_acceleration(params: PipelineParams) -> StageResult:
    """Every variant of the experiment's model at each resolution with that resolution's windows, so
    speed-ups sit beside that model's accuracies of the same input size and layout."""
    from itpn.bench.acceleration import benchmark_variants
    from itpn.models import VARIANTS

    bench = params.benchmark
    rows = []
    for resolution in bench.resolutions:
        rows += benchmark_variants(params.experiment.model, resolution, bench.variants or list(VARIANTS),
                                   batch_size=bench.batch_size, device=params.experiment.device, dtype=bench.dtype,
                                   model_kwargs=params.experiment.model_kwargs,
                                   window_size=bench.window_for(resolution),
                                   warmup=bench.warmup, iterations=bench.iterations, rounds=bench.rounds,
                                   pyramid=bench.pyramid, clock=bench.clock)
    return StageResult("benchmark_acceleration", key="", benchmarks=[row.to_dict() for row in rows])


STAGES: dict[str, Callable[[PipelineParams], StageResult]] = {
    "prepare_data": prepare_data,
    "pretrain": pretrain,
    "finetune_classification": finetune_classification,
    **{finetune_stage(task): finetune_openmmlab(task) for task in OPENMMLAB_TASKS},
    "benchmark_acceleration": benchmark_acceleration,
}
