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
import math
import numbers
import os
import random
import time
from typing import Any, Mapping, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from itpn.data import split_dota
from itpn.data.ade20k import find_base as find_ade20k_base
from itpn.records import CurveWriter, MetricRecord, write_metrics

# metric names as mmdet / mmseg / mmrotate report them -> the results store's names
PREFIXES = ("coco/", "dota/")


def usable(value: Any) -> bool:
    """A finite number that is not the COCO metric's -1 for "no object of that size in the split"."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
            and float(value) != -1.0)


def store_name(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


@HOOKS.register_module()
class MetricRecordsHook(Hook):
    """Writes the training curve as results-store rows and keeps the latest validation metrics."""

    priority = "LOW"

    def __init__(self, task: str, dataset: str, model: str, variant: str, output_url: str, log_every: int = 10):
        self.task, self.dataset, self.model, self.variant = task, dataset, model, variant
        self.output_url = output_url
        self.log_every = log_every
        self.latest: dict[str, float] = {}
        self.curve: Optional[CurveWriter] = None
        self.losses: list[float] = []
        self.iteration_start = 0.0
        self.iteration_seconds: list[float] = []  # forward, backward and step of every iteration of this job

    def record(self, split: str, name: str, value: float, step: int) -> MetricRecord:
        return MetricRecord(self.task, self.dataset, split, name, value, step, self.model, self.variant)

    def before_run(self, runner: Runner) -> None:
        if self.curve is None and runner.rank == 0:
            self.curve = CurveWriter(self.output_url, restart=not runner._resume)

    def before_train(self, runner: Runner) -> None:
        if self.curve is not None:  # keep the rows up to the checkpoint training starts from (none: iter 0)
            self.curve.truncate_after(runner.iter)

    def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.iteration_start = time.perf_counter()

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Mapping[str, Any]] = None) -> None:
        loss = float(torch.as_tensor(outputs["loss"]).detach()) if outputs and "loss" in outputs else math.nan
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} at iteration {runner.iter}: lower the lr or "
                                     f"check the data")
        self.losses.append(loss)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.iteration_seconds.append(time.perf_counter() - self.iteration_start)
        step = runner.iter + 1
        if self.curve is not None and step % self.log_every == 0:
            lr = max(group["lr"] for group in runner.optim_wrapper.optimizer.param_groups)
            self.curve.write([self.record("train", "loss", sum(self.losses) / len(self.losses), step),
                              self.record("train", "lr", lr, step)])
            self.losses.clear()

    def seconds_per_iteration(self) -> Optional[float]:
        """Mean time of a training iteration's forward, backward and optimizer step (data loading and
        validation excluded), leaving out the first tenth (at least one) as warm-up; None with fewer
        than three iterations."""
        seconds = self.iteration_seconds
        if len(seconds) < 3:
            return None
        timed = seconds[max(1, len(seconds) // 10):]
        return sum(timed) / len(timed)

    def after_val_epoch(self, runner: Runner, metrics: Optional[Mapping[str, float]] = None) -> None:
        self.latest = {store_name(k): float(v) for k, v in (metrics or {}).items() if usable(v)}
        if self.curve is not None:
            self.curve.write([self.record("val", name, value, runner.iter) for name, value in self.latest.items()])


def random_state() -> dict[str, Any]:
    """The state of every generator a training step draws from: Python's ``random``, NumPy's global
    generator (mmcv's transforms), torch's CPU generator and, once CUDA is initialised, every GPU's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class _RestoreBeforeNextBatch:
    """Wraps a train loop's data iterator: on the first batch after a resume it lets the iterator build
    its DataLoader iterator (which draws a torch seed for its workers), then puts ``state`` back, then
    reads the batch; every later batch goes straight through."""

    def __init__(self, iterator: Any, state: Mapping[str, Any]) -> None:
        self.iterator, self.state = iterator, state

    def __iter__(self) -> "_RestoreBeforeNextBatch":
        return self

    def __next__(self) -> Any:
        if self.state is not None:
            build = getattr(self.iterator, "_ensure_iterator", None)  # onedl-mmengine builds it lazily
            if build is not None:
                build()
            set_random_state(self.state)
            self.state = None
        return next(self.iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Makes a killed and resumed run draw the same augmentation, dropout and drop-path randomness as an
    uninterrupted one, so it ends with the same weights and metrics.

    mmengine's resume restores the weights, optimizer, schedulers, iteration and seed but not the state
    of the random generators (``Runner.resume``), and validation draws from them too. This hook (ours;
    mmengine has none) keeps validation from touching the training's random state, writes every rank's
    state into each checkpoint (``random_state``, a list by rank) and, after a resume, puts it back at the
    point the uninterrupted run was at when it saved: in an ``IterBasedTrainLoop`` just before the first
    batch after the skipped ones is read, in an ``EpochBasedTrainLoop`` at the start of the next epoch. A
    checkpoint from another world size resumes without it (logged)."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.pending: Optional[Mapping[str, Any]] = None
        self.outside_validation: Optional[Mapping[str, Any]] = None

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["random_state"] = all_gather_object(random_state())

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        states = checkpoint.get("random_state")
        rank, world_size = get_dist_info()
        if states is None:
            print_log("the checkpoint holds no random state (written before RandomStateHook): the resumed run "
                      "draws other random numbers than an uninterrupted one", logger="current")
        elif len(states) != world_size:
            print_log(f"the checkpoint's random state is from {len(states)} processes, this run has {world_size}: "
                      f"resuming without it", logger="current")
        else:
            self.pending = states[rank]

    def before_train(self, runner: Runner) -> None:
        loop = runner.train_loop
        if self.pending is not None and hasattr(loop, "dataloader_iterator"):
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop.dataloader_iterator, self.pending)
            self.pending = None

    def before_train_epoch(self, runner: Runner) -> None:
        if self.pending is not None:  # an epoch-based loop: the checkpoint was saved at the previous epoch's end
            set_random_state(self.pending)
            self.pending = None

    def before_val(self, runner: Runner) -> None:
        self.outside_validation = random_state()

    def after_val(self, runner: Runner) -> None:
        if self.outside_validation is not None:
            set_random_state(self.outside_validation)
            self.outside_validation = None


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
    training run continues from the latest checkpoint in ``work_dir`` when there is one (a killed run
    picks up where it stopped; the training curve keeps the rows up to that checkpoint).
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
        cfg.resume = True  # mmengine: the latest checkpoint of work_dir, if any
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
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, MetricRecordsHook))
    if train:
        runner.train()  # validates after the last iteration / epoch
        metrics = hook.latest
    else:
        metrics = {store_name(k): v for k, v in runner.val().items()}
    rows = [MetricRecord(task, dataset, "val", name, float(value), 0, model_name, variant_name)
            for name, value in metrics.items() if usable(value)]
    if not rows:
        raise RuntimeError(f"the {task} evaluation in {cfg.work_dir} produced no metric (a detector with no "
                           f"detection above test_cfg's score_thr gets none from the COCO metric); see its log")
    seconds = hook.seconds_per_iteration()
    if seconds is not None:
        rows.append(MetricRecord(task, dataset, "train", "seconds_per_iter", seconds, 0, model_name, variant_name))
    if runner.rank == 0:
        write_metrics(output_url, rows)
    return [row.to_dict() for row in rows]


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
