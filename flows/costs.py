"""GPU-hours of a pipeline's stages before they run (``itpn run --plan``, ``itpn reproduce ... --plan``).

Each stage's work comes from its parameters: pre-training and ImageNet fine-tuning from the library's
configs (epochs, or ``total_steps`` x global batch), the OpenMMLab fine-tunes from their config files
(``max_epochs`` x the data set's training images, or ``max_iters`` x global batch). FLOPs per image are
counted on the meta device: pre-training by ``itpn.bench.cost.pretraining_gflops``; fine-tuning as one
forward and backward of the backbone (with its pyramid for the dense tasks, at COCO's 800 x 1344, ADE20K's
512² crop and DOTA's 1024² patches; the detection and segmentation heads are not counted, so these are
lower bounds); the benchmark as forward passes. ``itpn.bench.cost`` turns work into GPU-hours. Nothing
is started: no flow, no process, no file written.
"""
from __future__ import annotations

from typing import Any

from itpn.bench.cost import (TRAIN_IMAGES, StageWork, paper_v100_hours, pretraining_gflops, suite_label,
                             training_gflops)

from .outline import FINETUNE_TASKS, REPO_ROOT, finetune_stage
from .params import PipelineParams

DENSE_SIZES = {"detection": (800, 1344), "segmentation": (512, 512), "rotated": (1024, 1024)}  # ours, see above


def _openmmlab_iterations(section: dict[str, Any], gpus: int, data: str) -> tuple[float, str]:
    from mmengine.config import Config

    config = Config.fromfile(str(REPO_ROOT / section["config"]))
    if section.get("cfg_options"):
        config.merge_from_dict(section["cfg_options"])
    loop = config.get("train_cfg", {})
    batch = config.train_dataloader.batch_size * gpus
    if loop.get("max_epochs"):
        epochs = loop["max_epochs"]
        return epochs * TRAIN_IMAGES[data], f"{epochs} epochs × {TRAIN_IMAGES[data]:,} {data} images"
    iterations = loop["max_iters"]
    return iterations * batch, f"{iterations:,} iterations × {batch} images"


def stage_work(stage: str, params: PipelineParams) -> StageWork:
    """What ``stage`` of ``params`` processes and the FLOPs per image of its step (see the module docstring)."""
    gpus = max(params.experiment.gpus, 1)
    model, kwargs = params.experiment.model, params.experiment.model_kwargs
    if stage == "prepare_data":
        return StageWork(stage, 0, "data preparation (CPU)", 0.0, "-")
    if stage == "pretrain":
        config = params.pretrain_config()
        global_batch = config.batch_size * config.accum_steps * gpus
        if config.total_steps:
            images, basis = config.total_steps * global_batch, f"{config.total_steps:,} updates × {global_batch}"
        else:
            images = config.epochs * TRAIN_IMAGES["imagenet"]
            basis = f"{config.epochs} epochs × {TRAIN_IMAGES['imagenet']:,} ImageNet images"
        values = {key: value for key, value in config.to_dict().items()
                  if key in ("model", "model_kwargs", "img_size", "teacher", "mask_ratio", "mask_mode", "decoder_dim",
                             "decoder_depth", "decoder_heads", "mfm_targets", "integral", "clip_checkpoint")}
        default_step = config.teacher == "ema" and not config.model_kwargs and config.img_size == 224
        return StageWork(stage, images, basis, pretraining_gflops(values),
                         f"{config.teacher} teacher, {config.mask_ratio:.0%} masked, {config.img_size}²",
                         suite_label("pre-training step", config.model, config.img_size) if default_step else None,
                         paper_v100_hours(config.model, config.teacher, images / TRAIN_IMAGES["imagenet"])
                         if not config.total_steps else None)
    if stage == finetune_stage("classification"):
        config = params.classification_config(None)
        side = config.img_size
        images = config.epochs * TRAIN_IMAGES["imagenet"]
        return StageWork(stage, images, f"{config.epochs} epochs × {TRAIN_IMAGES['imagenet']:,} ImageNet images",
                         training_gflops(config.model, (side, side), config.model_kwargs),
                         f"forward + backward at {side}²",
                         suite_label("fine-tuning step", config.model, side) if not config.model_kwargs else None)
    if stage == "benchmark_acceleration":
        bench = params.benchmark
        variants = len(bench.variants) or 1
        calls = bench.rounds * (bench.warmup + bench.iterations) * variants * bench.batch_size
        gflops = sum(training_gflops(model, (side, side), kwargs, pyramid=bench.pyramid, backward=False)
                     for side in bench.resolutions) / len(bench.resolutions)
        return StageWork(stage, calls * len(bench.resolutions), f"{calls * len(bench.resolutions):,} forward passes",
                         gflops, "baseline forward (the variants need less)")
    task = next(task for task in FINETUNE_TASKS if finetune_stage(task) == stage)
    section = params.finetune[task]
    images, basis = _openmmlab_iterations(section, gpus, FINETUNE_TASKS[task]["data"])
    size = DENSE_SIZES[task]
    return StageWork(stage, images, basis,
                     training_gflops(model, size, kwargs, pyramid=True, variant=section.get("variant")),
                     f"backbone + pyramid forward + backward at {size[0]}×{size[1]}, heads not counted")


def row_totals(jobs: list[Any], hours: list[float]) -> dict[str, tuple[float, float]]:
    """Per table row: (GPU-hours of the jobs it alone needs, GPU-hours of the jobs it shares with other rows)."""
    totals: dict[str, list[float]] = {}
    for job, cost in zip(jobs, hours):
        for row in job.rows:
            own, shared = totals.setdefault(row, [0.0, 0.0])
            totals[row] = [own + cost, shared] if len(job.rows) == 1 else [own, shared + cost]
    return {row: (own, shared) for row, (own, shared) in totals.items()}

