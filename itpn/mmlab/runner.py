"""Entry points for the OpenMMLab fine-tunes: ``run_detection``, ``run_segmentation``, ``run_rotated``.

Each builds an mmengine ``Runner`` from a config of ``configs/``, trains (unless ``train=False``),
and writes ``metrics.json`` (the final validation metrics as results-store rows) and
``curve.jsonl`` (training loss and lr every ``log_every`` iterations, validation metrics after
every validation) under ``output_url``. Multi-GPU runs go through ``torchrun`` (see
``python -m itpn.finetune --help``); the runner picks the launcher up from the environment.

The config names its data set and task for the records with two top-level keys mmengine
ignores: ``itpn_task`` and ``itpn_dataset``.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Any, Mapping, Optional

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from itpn.data import split_dota
from itpn.data.ade20k import find_base as find_ade20k_base
from itpn.files import join_url
from itpn.models.acceleration import get_acceleration
from itpn.models.layout import effective_layout
from itpn.records import MetricRecord, TokenLayout, write_metrics

from .checkpoints import AtomicCheckpointRunner, resume_point
from .metric_hook import CURVE_NAME, MetricRecordsHook

def load_config(config: str | Mapping[str, Any] | Config, cfg_options: Optional[Mapping[str, Any]] = None) -> Config:
    if isinstance(config, Config):
        cfg = config.copy()
    elif isinstance(config, str):
        if not os.path.exists(config):
            raise FileNotFoundError(f"config {config} not found; the configs live under configs/ of the repository")
        cfg = Config.fromfile(config)
    else:
        cfg = Config(dict(config))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataloader's data set (and an evaluator's ``ann_file``) at ``data_root``."""
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"data_root {data_root} is not a folder; generate the data first "
                                f"(itpn.data.prepare(kind, url, generate=True)) or fix the path")
    root = data_root.rstrip("/") + "/"
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader is not None:
            loader.dataset.data_root = root
        evaluator = cfg.get(f"{split}_evaluator")
        if split != "train" and evaluator is not None and "ann_file" in evaluator and loader is not None:
            evaluator.ann_file = os.path.join(root, loader.dataset.ann_file)


log = logging.getLogger(__name__)


def watch_evaluation_sizes(runner: Runner) -> Counter:
    """Count the input sizes (H, W) in px the backbone sees in evaluation (images per size), from now on."""
    backbone = getattr(runner.model, "module", runner.model).backbone
    sizes: Counter = Counter()

    def count(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if not module.training:
            sizes[tuple(int(side) for side in args[0].shape[-2:])] += int(args[0].shape[0])

    backbone.register_forward_pre_hook(count)
    return sizes


def evaluated_layout(runner: Runner, sizes: Counter) -> Optional[TokenLayout]:
    """The layout of the backbone's acceleration at the input size it evaluated most images at (None when it
    evaluated none); several sizes (keep-ratio resizing of varied images) are logged."""
    if not sizes:
        return None
    if len(sizes) > 1:
        log.warning("the backbone evaluated several input sizes %s; rows record the most frequent", dict(sizes))
    model = getattr(runner.model, "module", runner.model).backbone.model
    return effective_layout(get_acceleration(model), sizes.most_common(1)[0][0], len(model.blocks))


def run_task(
    task: str,
    config: str | Mapping[str, Any] | Config,
    *,
    work_dir: Optional[str] = None,
    output_url: Optional[str] = None,
    checkpoint: Optional[str] = None,
    variant: Optional[str] = None,
    data_root: Optional[str] = None,
    cfg_options: Optional[Mapping[str, Any]] = None,
    train: bool = True,
    resume: bool = True,
    log_every: int = 10,
) -> list[dict[str, Any]]:
    """Fine-tune (or only evaluate, ``train=False``) one OpenMMLab config; returns the metric rows.

    ``checkpoint`` (a pre-training export) and ``variant`` (an acceleration variant) override the
    backbone's, ``data_root`` the data sets' (and the COCO evaluator's annotation file);
    ``cfg_options`` are dotted-key overrides as mmengine takes them. With ``resume`` (the default) a
    training run continues from the newest checkpoint in ``work_dir`` when there is one
    (``checkpoints.resume_point``: a killed run picks up where it stopped; the training curve keeps the
    rows up to that checkpoint). Checkpoints are written atomically (``AtomicCheckpointRunner``).

    The metrics are those of the validation after the last iteration. A run resumed from its last
    checkpoint (killed after saving it, before or while validating) trains no iteration, so mmengine's
    loop validates nothing: it is validated here, on the weights of that checkpoint. Raises
    ``RuntimeError`` when the evaluation gives no usable metric, naming whether it ran, on which
    weights, what it returned and what to do.
    The validation rows carry the layout the backbone evaluated with, at the input size it saw
    (``evaluated_layout``).
    """
    cfg = load_config(config, cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    declared = cfg.get("itpn_task")
    if declared != task:
        raise ValueError(f"this config is for task {declared!r}, not {task!r} (set itpn_task in the config, or run "
                         f"the matching task)")
    backbone = cfg.model.backbone
    if backbone.get("type") != "ITPNBackbone":
        raise ValueError(f"model.backbone of this config is {backbone.get('type')!r}; the fine-tunes run on "
                         f"ITPNBackbone")
    if not train and not cfg.get("load_from"):
        raise ValueError("evaluation only (train=False) needs the fine-tuned detector / segmenter: pass "
                         "cfg_options={'load_from': '<work_dir>/iter_N.pth'} (its heads are untrained otherwise)")
    if checkpoint is not None:
        backbone.checkpoint = checkpoint
    if variant is not None:
        backbone.acceleration = variant
    cfg.work_dir = work_dir or cfg.get("work_dir") or os.path.join("work_dirs", task)
    if train and resume and not cfg.get("load_from"):
        latest = resume_point(cfg.work_dir)
        if latest is not None:  # mmengine: resume with load_from set continues from that file
            cfg.resume, cfg.load_from = True, latest
    output_url = output_url or cfg.work_dir
    model_name = backbone.get("model_name", "fast_itpn_base_patch16_224")
    variant_name = backbone.get("acceleration", "baseline")
    dataset = cfg.get("itpn_dataset", "")
    recorder = dict(type="MetricRecordsHook", task=task, dataset=dataset, model=model_name, variant=variant_name,
                    output_url=output_url, log_every=log_every)
    ours = ("MetricRecordsHook", "RandomStateHook")
    cfg.custom_hooks = [hook for hook in cfg.get("custom_hooks", []) if hook.get("type") not in ours]
    cfg.custom_hooks += [recorder, dict(type="RandomStateHook")]
    if not torch.cuda.is_available():
        torch.set_flush_denormal(True)  # CPU: denormal optimizer states slow training down tenfold over time
    runner = AtomicCheckpointRunner.from_cfg(cfg)
    sizes = watch_evaluation_sizes(runner)
    hook = next(h for h in runner.hooks if isinstance(h, MetricRecordsHook))
    if train:
        runner.train()  # validates after the last iteration / epoch, if it trained one
        if hook.validated_at != runner.iter and runner.val_loop is not None:
            runner.val_loop.run()  # resumed from its last checkpoint: nothing trained, nothing validated
            hook.after_run(runner)  # the curve, with this validation's rows, published again
        weights = runner.message_hub.get_info("last_ckpt") or cfg.get("load_from")
    else:
        runner.val()
        weights = cfg.load_from
    layout = evaluated_layout(runner, sizes)
    rows = [MetricRecord(task, dataset, "val", name, value, 0, model_name, variant_name, layout)
            for name, value in hook.latest.items()]
    if not rows:
        raise RuntimeError(no_metric_message(task, cfg, hook, runner.iter, weights))
    seconds = hook.seconds_per_iteration()
    if seconds is not None:
        rows.append(MetricRecord(task, dataset, "train", "seconds_per_iter", seconds, 0, model_name, variant_name))
    if runner.rank == 0:
        write_metrics(output_url, rows)
    return [row.to_dict() for row in rows]


def no_metric_message(task: str, cfg: Config, hook: MetricRecordsHook, iteration: int,
                      weights: Optional[str]) -> str:
    """Why an OpenMMLab run has no metric to report: no evaluation ran (and why), or it ran on ``weights``
    and returned none that is usable; with what to do."""
    where = f"the {task} run in {cfg.work_dir}"
    if hook.validated_at is None:
        return (f"{where} has no metric: no evaluation ran (its config has no val_dataloader, val_cfg and "
                f"val_evaluator to run one). Add them to {cfg.filename or 'the config'} and run again; the "
                f"training's checkpoints stay in {cfg.work_dir}")
    returned = ", ".join(f"{name}={value}" for name, value in hook.evaluated.items()) or "nothing"
    return (f"{where} has no metric: its evaluation ran on the weights of iteration {iteration} "
            f"({weights or 'not saved'}) and returned {returned}; none is a usable number (the COCO metric "
            f"gives -1 for a detector with no detection above test_cfg's score_thr, and no score at all when "
            f"the detector found nothing). Check the training loss in {join_url(hook.output_url, CURVE_NAME)}: "
            f"train longer (train_cfg.max_iters) or lower the lr if it does not fall, or lower the model's "
            f"test_cfg score_thr; the evaluation's log is in {cfg.work_dir}")


def run_detection(config: str | Mapping[str, Any] | Config, **kwargs: Any) -> list[dict[str, Any]]:
    """COCO detection and instance segmentation (Mask R-CNN, DINO): ``bbox_mAP``, ``segm_mAP`` ..."""
    return run_task("detection", config, **kwargs)


def run_segmentation(config: str | Mapping[str, Any] | Config, *, data_root: Optional[str] = None,
                     **kwargs: Any) -> list[dict[str, Any]]:
    """ADE20K semantic segmentation (UPerNet): ``mIoU``, ``aAcc``, ``mAcc``. ``data_root`` may hold
    ``ADEChallengeData2016/`` or be that folder."""
    if data_root is not None:
        data_root = os.path.join(data_root, find_ade20k_base(data_root))
    return run_task("segmentation", config, data_root=data_root, **kwargs)


def split_once(source: str, split_root: str, patch_size: int, gap: int) -> str:
    """Cut ``source`` (DOTA layout) into patches at ``split_root`` unless the same split is already there."""
    record = {"source": os.path.abspath(source), "patch_size": patch_size, "gap": gap}
    marker = os.path.join(split_root, "split.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            if json.load(handle) == record:
                return split_root
    summary = split_dota(source, split_root, patch_size=patch_size, gap=gap, overwrite=True)
    with open(marker, "w") as handle:
        json.dump(dict(record, summary=summary), handle)
    return split_root


def run_rotated(config: str | Mapping[str, Any] | Config, *, data_root: Optional[str] = None,
                split_root: Optional[str] = None, cfg_options: Optional[Mapping[str, Any]] = None,
                **kwargs: Any) -> list[dict[str, Any]]:
    """DOTA rotated detection: split ``data_root`` (the unsplit DOTA layout; default the config's
    ``itpn_dota_source``) into patches, fine-tune on the train patches and report DOTA's ``mAP`` on
    the full val images after merging the patch detections."""
    cfg = load_config(config, cfg_options)
    source = data_root or cfg.get("itpn_dota_source")
    if not source or not os.path.isdir(source):
        raise FileNotFoundError(f"DOTA data {source!r} not found: pass data_root (train/ and val/ with images/ and "
                                f"labelTxt/) or set itpn_dota_source in the config")
    split = dict(cfg.get("itpn_dota_split", dict(patch_size=1024, gap=200)))
    work_dir = kwargs.get("work_dir") or cfg.get("work_dir") or os.path.join("work_dirs", "rotated")
    split_root = split_root or os.path.join(work_dir, f"split_{split['patch_size']}_{split['gap']}")
    split_once(source, split_root, split["patch_size"], split["gap"])
    for name in ("val_evaluator", "test_evaluator"):
        if cfg.get(name) is not None and cfg[name].get("type") == "DOTAMergedMetric":
            cfg[name].full_ann_dir = os.path.join(source, "val", "labelTxt")
    return run_task("rotated", cfg, data_root=split_root, **kwargs)
