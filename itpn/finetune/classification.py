"""ImageNet fine-tuning of HiViT / iTPN / Fast-iTPN, built from timm's training utilities.

timm supplies the transform (RandAugment, random erasing), ``Mixup``, the losses, AdamW (with the
released scripts' layer-wise lr decay, ``itpn.finetune.optim``), the warm-up + cosine schedule, ``ModelEmaV3``
and ``accuracy``; ``itpn.engine`` the checkpoint, the resume rule, the data order and the curve log.
This module wires them into a loop that resumes exactly from any update (the data order and every random
draw are functions of the seed and the position, ``itpn.data.order``, and the checkpoint, written every
``checkpoint_every`` updates and at each epoch's end, holds all optimisation state), runs under ``torchrun``
(DDP) and writes metrics rows and a training curve for the results store.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import fsspec
import numpy as np
import timm
import torch
import torch.distributed as dist
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from itpn.data import ImageNetFolder, build_classification_transform
from itpn.data.order import SeededSamples, seed_all, step_seed, updates_per_epoch
from itpn.engine import Checkpoint, CheckpointFormat, CurveLog, data_parallel, epoch_loader
from itpn.files import join_url, write_atomically
from itpn.models import load_checkpoint, save_safetensors
from itpn.models.checkpoint import grid_metadata
from itpn.models.checkpoint import read_safetensors_metadata as read_export_metadata
from itpn.models.acceleration import get_acceleration, set_acceleration
from itpn.models.layout import effective_layout, resolve_variant, stage3_depth
from itpn.records import MetricRecord, write_metrics
from itpn.runtime import Runtime, setup_runtime

from .config import ClassificationConfig
from .optim import param_groups

log = logging.getLogger(__name__)

EXPORT_NAME = "model.safetensors"
CURVE_NAME = "curve.jsonl"
VARIANTS_FOLDER = "eval"  # one finished variant evaluation per file (evaluate_variants' kept_url)
TASK = "classification"


def _read_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (no ``format`` key; before 2026-11-30) held the settings as JSON text and no resolved schedule."""
    return {**state, "config": json.loads(state["config"])}


# A resumed run may change where and how it runs, not what it trains: every other setting (the model and its
# variant, the data subset, the optimiser, the schedule, the augmentation, the seed) must equal the checkpoint's.
# data_url and pretrained are where the inputs live (the weights after the first update come from the checkpoint).
CHECKPOINT_FORMAT = CheckpointFormat(
    name="itpn-finetune/2", kind="fine-tuning",
    free=frozenset({"pretrained", "eval_variants", "data_url", "dataset", "num_workers", "amp_dtype", "device",
                    "output_url", "resume", "checkpoint_every", "stop_after_epochs", "log_every", "progress"}),
    older={None: _read_format_1})


@dataclass
class ClassificationResult:
    metrics: list[dict[str, Any]]  # the rows written to metrics.json
    metrics_url: str
    curve_url: str
    export_url: str  # fine-tuned weights (the EMA weights when model_ema_eval)
    epochs_done: int


# --- building ----------------------------------------------------------------------------------------
def build_datasets(config: ClassificationConfig) -> tuple[ImageNetFolder, ImageNetFolder]:
    train_transform = build_classification_transform(
        True, config.img_size, auto_augment=config.auto_augment, re_prob=config.reprob,
        color_jitter=config.color_jitter, mean=config.mean, std=config.std)
    eval_transform = build_classification_transform(False, config.img_size, crop_pct=config.crop_pct,
                                                    mean=config.mean, std=config.std)
    train = ImageNetFolder(config.data_url, config.train_split, train_transform, per_class=config.labels_per_class)
    val = ImageNetFolder(config.data_url, config.val_split, eval_transform, classes=train.classes)
    if config.labels_per_class is not None:
        log.info("fine-tuning on %d labelled images (at most %d per class) of %s/%s", len(train),
                 config.labels_per_class, config.data_url, config.train_split)
    return train, val


def build_model(config: ClassificationConfig, num_classes: int) -> nn.Module:
    """The classifier running ``config.variant``, initialised from ``config.pretrained`` (the pyramid of a
    pre-training export is dropped: classification uses the backbone alone)."""
    model = timm.create_model(config.model, num_classes=num_classes, img_size=config.img_size,
                              drop_path_rate=config.drop_path, **config.model_kwargs)
    set_acceleration(model, resolve_variant(config.variant, config.window_size))
    if config.pretrained:
        report = load_checkpoint(model, config.pretrained)
        log.info("initialised from %s", report.summary())
    return model


def _eval_loader(dataset: Dataset, batch_size: int, runtime: Runtime, workers: int) -> DataLoader:
    """Every image exactly once, split over the ranks under ``torchrun`` (unevenly where the count does not
    divide: ``DistributedSampler`` would repeat images to even the shares, and count them twice)."""
    share = range(runtime.rank, len(dataset), runtime.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=share, num_workers=workers,
                      pin_memory=runtime.device.type == "cuda", persistent_workers=False)


def _autocast(config: ClassificationConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and config.amp_dtype == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- evaluation --------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             autocast: contextlib.AbstractContextManager | None = None, progress: bool = False,
             distributed: bool = False) -> dict[str, float]:
    """Top-1 / top-5 (%) and the mean cross-entropy over ``loader`` (summed over all ranks when
    ``distributed``: every rank must then call this with its share); also this process's images and
    the seconds its model's forward alone took (``local_images`` / ``forward_seconds``: throughput)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, images
    forward_seconds = 0.0
    for images, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast or contextlib.nullcontext():
            logits = model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        forward_seconds += time.perf_counter() - start
        logits = logits.float()
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
        count = images.shape[0]
        totals += torch.tensor([top1.item() * count / 100, top5.item() * count / 100,
                                nn.functional.cross_entropy(logits, targets, reduction="sum").item(), count],
                               dtype=torch.float64)
    local_images = totals[3].item()
    if distributed:
        totals = totals.to(device)
        dist.all_reduce(totals)
        totals = totals.cpu()
    images = max(totals[3].item(), 1.0)
    return {"top1": 100 * totals[0].item() / images, "top5": 100 * totals[1].item() / images,
            "loss": totals[2].item() / images, "images": totals[3].item(), "local_images": local_images,
            "forward_seconds": forward_seconds}


# --- training ----------------------------------------------------------------------------------------
class ClassificationTrainer:
    def __init__(self, config: ClassificationConfig, runtime: Optional[Runtime] = None):
        self.config = config
        self.runtime = runtime or setup_runtime(config.device)
        self.train_set, self.val_set = build_datasets(config)
        self.num_classes = len(self.train_set.classes)
        if self.num_classes < 2:
            raise ValueError(f"{config.data_url}/{config.train_split} has {self.num_classes} class folder(s); "
                             f"a classifier needs at least 2")
        if self.runtime.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal optimizer states slow CPU training down over time
        seed_all(config.seed)
        self.model = build_model(config, self.num_classes).to(self.runtime.device)
        self.layout = effective_layout(get_acceleration(self.model), config.img_size, len(self.model.blocks))
        self.ema = ModelEmaV3(self.model, decay=config.model_ema_decay) if config.model_ema else None
        groups = param_groups(self.model, config.weight_decay, config.layer_decay, config.layer_decay_rule)
        self.optimizer = create_optimizer_v2(groups, opt="adamw", lr=config.lr, weight_decay=config.weight_decay)
        self.train_data = SeededSamples(self.train_set)
        self.val_loader = _eval_loader(self.val_set, config.batch_size, self.runtime, config.num_workers)
        self.global_batch = config.batch_size * config.accum_steps * self.runtime.world_size
        self.steps_per_epoch = updates_per_epoch(len(self.train_set), config.batch_size, config.accum_steps,
                                                 self.runtime.world_size, f"{config.data_url}/{config.train_split}")
        if config.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, config.max_steps_per_epoch)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched="cosine", num_epochs=config.epochs, warmup_epochs=config.warmup_epochs,
            warmup_lr=config.warmup_lr, min_lr=config.min_lr, step_on_epochs=False,
            updates_per_epoch=self.steps_per_epoch)
        self.mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, prob=config.mixup_prob,
                           switch_prob=config.mixup_switch_prob, label_smoothing=config.smoothing,
                           num_classes=self.num_classes) if config.mixup_active else None
        if self.mixup is not None:
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif config.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(config.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.wrapped = data_parallel(self.model, self.runtime)
        self.epoch = 0
        self.updates = 0
        self.epoch_losses: list[float] = []  # the training losses of the current epoch so far
        self.checkpoint = Checkpoint(config.output_url, CHECKPOINT_FORMAT, self.runtime, config.to_dict(),
                                     self.global_batch, {"updates_per_epoch": self.steps_per_epoch})
        self.checkpoint_url = self.checkpoint.url

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None and self.config.model_ema_eval else self.model

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "updates": self.updates,
            "epoch_losses": list(self.epoch_losses),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a checkpoint ``Checkpoint.load`` has read and found resumable."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.updates = state["epoch"], state["updates"]
        self.epoch_losses = list(state["epoch_losses"])

    def save(self, curve: Optional[CurveLog]) -> None:
        """Write the checkpoint (rank 0) and publish the curve up to it."""
        self.checkpoint.save(self.state())
        if curve is not None:
            curve.publish()

    def batches(self, start_update: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's micro-batches of the current epoch from update ``start_update`` on."""
        config = self.config
        loader = epoch_loader(self.train_data, config.batch_size, config.accum_steps, self.runtime, config.seed,
                              self.epoch, start_update, config.num_workers)
        for index, batch in enumerate(loader):
            if index >= (self.steps_per_epoch - start_update) * config.accum_steps:
                break
            yield batch

    def train_epoch(self, curve: Optional[CurveLog]) -> float:
        """The rest of the current epoch (all of it unless resumed in its middle)."""
        config, device = self.config, self.runtime.device
        self.wrapped.train()
        autocast = _autocast(config, device)
        losses = self.epoch_losses
        start_update = self.updates - self.epoch * self.steps_per_epoch
        bar = tqdm(total=self.steps_per_epoch, initial=start_update, desc=f"epoch {self.epoch + 1}/{config.epochs}",
                   disable=not (config.progress and self.runtime.is_main))
        for index, (images, targets) in enumerate(self.batches(start_update)):
            micro = index % config.accum_steps
            seed_all(step_seed(config.seed, self.updates, micro, self.runtime.rank))  # mixup, drop path
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            last_micro = micro == config.accum_steps - 1
            sync = last_micro or not self.runtime.distributed
            with autocast, (contextlib.nullcontext() if sync else self.wrapped.no_sync()):
                loss = self.criterion(self.wrapped(images), targets)
                (loss / config.accum_steps).backward()
            losses.append(loss.item())
            if not last_micro:
                continue
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(f"the training loss is {losses[-1]} at update {self.updates} "
                                         f"(epoch {self.epoch}); lower lr or set clip_grad")
            if config.clip_grad:
                nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.updates += 1
            if self.ema is not None:
                self.ema.update(self.model, step=self.updates)
            self.scheduler.step_update(self.updates)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if curve is not None and self.updates % config.log_every == 0:
                lr = max(group["lr"] for group in self.optimizer.param_groups)
                curve.write([self.record("train", "loss", float(np.mean(losses[-config.log_every:])), self.updates),
                             self.record("train", "lr", lr, self.updates)])
            if config.checkpoint_every and self.updates % config.checkpoint_every == 0 \
                    and self.updates % self.steps_per_epoch:  # the epoch's end saves after evaluation
                self.save(curve)
        bar.close()
        self.epoch += 1
        self.epoch_losses = []
        return float(np.mean(losses)) if losses else float("nan")

    def record(self, split: str, name: str, value: float, step: int = 0) -> dict[str, Any]:
        """A metric row of this run as the results store takes it (``MetricRecord``)."""
        return MetricRecord(TASK, self.config.dataset, split, name, value, step, self.config.model,
                            self.config.variant, self.layout).to_dict()

    def fit(self) -> ClassificationResult:
        config = self.config
        previous = self.checkpoint.load() if config.resume else None
        if previous is not None:
            self.restore(previous)
            log.info("resumed from %s at epoch %d (update %d)", self.checkpoint_url, self.epoch, self.updates)
        curve = CurveLog(join_url(config.output_url, CURVE_NAME),
                         None if previous is None else self.updates) if self.runtime.is_main else None
        last_epoch = config.epochs if config.stop_after_epochs is None else min(
            config.epochs, self.epoch + config.stop_after_epochs)
        autocast = _autocast(config, self.runtime.device)
        scores: dict[str, float] = {}
        while self.epoch < last_epoch:
            train_loss = self.train_epoch(curve)
            scores = evaluate(self.eval_model, self.val_loader, self.runtime.device, autocast,
                              distributed=self.runtime.distributed)
            if self.runtime.is_main:
                curve.write([self.record("train", "epoch_loss", train_loss, self.updates)]
                            + [self.record(config.val_split, name, scores[name], self.updates)
                               for name in ("top1", "top5", "loss")])
                log.info("epoch %d: train loss %.4f, val top-1 %.2f top-5 %.2f", self.epoch, train_loss,
                         scores["top1"], scores["top5"])
            self.save(curve)
        if not scores:  # nothing left to train: evaluate what the checkpoint holds
            scores = evaluate(self.eval_model, self.val_loader, self.runtime.device, autocast,
                              distributed=self.runtime.distributed)
        export_url = join_url(config.output_url, EXPORT_NAME)
        rows = [self.record(config.val_split, name, scores[name]) for name in ("top1", "top5")]
        if self.ema is not None and config.model_ema_eval:
            raw = evaluate(self.model, self.val_loader, self.runtime.device, autocast,
                           distributed=self.runtime.distributed)
            rows.append(self.record(config.val_split, "top1_no_ema", raw["top1"]))
        if self.runtime.is_main:
            metadata = {"model": config.model, "model_kwargs": json.dumps(config.model_kwargs),
                        "num_classes": str(self.num_classes), "img_size": str(config.img_size),
                        "variant": config.variant, "mean": json.dumps(list(config.mean)),
                        "std": json.dumps(list(config.std)),
                        "classes": json.dumps(self.train_set.classes), "epochs_done": str(self.epoch),
                        **grid_metadata(self.model)}
            save_safetensors(self.eval_model.state_dict(), export_url, metadata)
        if config.eval_variants:
            # The exported weights under each variant, every rank evaluating its share of the images;
            # the training variant's top-1/top-5 are already rows.
            if self.runtime.distributed:
                dist.barrier()  # the export is written
            seen = {(row["split"], row["name"], row["variant"]) for row in rows}
            rows += [row for row in evaluate_variants(
                export_url, config.data_url, config.eval_variants, split=config.val_split, dataset=config.dataset,
                batch_size=config.batch_size, num_workers=config.num_workers, runtime=self.runtime,
                crop_pct=config.crop_pct, window_size=config.window_size,
                progress=config.progress and self.runtime.is_main,
                kept_url=join_url(config.output_url, VARIANTS_FOLDER))
                if (row["split"], row["name"], row["variant"]) not in seen]
        metrics_url = join_url(config.output_url, "metrics.json")
        if self.runtime.is_main:
            write_metrics(config.output_url, rows)
        return ClassificationResult(rows, metrics_url, join_url(config.output_url, CURVE_NAME), export_url, self.epoch)


def run_classification(config: ClassificationConfig | dict[str, Any] | str) -> ClassificationResult:
    """Fine-tune a classifier (a config, a dict of its fields or a YAML URL); writes ``metrics.json``,
    ``curve.jsonl``, ``checkpoint.pt`` and ``model.safetensors`` under ``config.output_url``."""
    if isinstance(config, str):
        config = ClassificationConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = ClassificationConfig.from_dict(config)
    return ClassificationTrainer(config).fit()


# --- one checkpoint under every acceleration variant ------------------------------------------------
def evaluate_variants(
    checkpoint: str,
    data_url: str,
    variants: Sequence[str],
    *,
    split: str = "val",
    dataset: str = "imagenet",
    batch_size: int = 64,
    num_workers: int = 4,
    device: str = "auto",
    runtime: Optional[Runtime] = None,
    crop_pct: Optional[float] = None,
    window_size: Optional[int] = None,
    progress: bool = True,
    kept_url: Optional[str] = None,
) -> list[dict[str, Any]]:
    """Evaluate one fine-tuned ``model.safetensors`` under each acceleration variant.

    Returns metric rows per variant: ``top1``, ``top5``, ``images_per_s`` (the model's forward alone on
    one device, data loading excluded) and ``speedup`` over the ``baseline`` variant (over the first
    variant when ``baseline`` is not among them). Accuracy and speed-up thus come from the same weights,
    and every row carries the layout it ran with (``window_size`` sets the windowed variants' windows).
    With a distributed ``runtime`` (under ``torchrun``) every rank calls this and evaluates its share of
    the images; the accuracies are over all of them, the speeds this rank's.

    With ``kept_url`` (a folder) each variant's scores are written there as ``<variant>.json`` (atomically,
    by rank 0) as soon as it is evaluated, with the SHA-256 of ``checkpoint``; a variant whose file holds
    this checkpoint's hash is read back instead of evaluated again, so a run killed among its variants
    redoes only the one cut short (its speed is the one measured then).
    """
    if not variants:
        raise ValueError("variants is empty: name at least one acceleration variant (e.g. 'baseline')")
    metadata = read_export_metadata(checkpoint)
    missing = [key for key in ("model", "num_classes", "img_size", "classes") if key not in metadata]
    if missing:
        raise ValueError(f"{checkpoint} lacks the metadata {missing} a fine-tuned export carries: pass the "
                         f"model.safetensors written by run_classification")
    name, img_size = metadata["model"], int(metadata["img_size"])
    model_kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    if runtime is None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        runtime = Runtime(0, 1, torch.device(device))
    # exports of before 2026-12-03 record no statistics: they were trained with ImageNet's
    mean = json.loads(metadata.get("mean", json.dumps(IMAGENET_DEFAULT_MEAN)))
    std = json.loads(metadata.get("std", json.dumps(IMAGENET_DEFAULT_STD)))
    transform = build_classification_transform(False, img_size, crop_pct=crop_pct, mean=mean, std=std)
    val = ImageNetFolder(data_url, split, transform, classes=json.loads(metadata["classes"]))
    loader = _eval_loader(val, batch_size, runtime, num_workers)
    digest = file_sha256(checkpoint) if kept_url else ""
    results: dict[str, dict[str, float]] = {}
    layouts = {}
    for variant in tqdm(variants, desc="variants", disable=not progress):
        kept = join_url(kept_url, f"{variant}.json") if kept_url else None
        scores = read_kept_scores(kept, digest) if kept else None
        accelerated = resolve_variant(variant, window_size)
        if scores is not None:
            log.info("%s: the finished evaluation in %s is kept", variant, kept)
            layouts[variant] = effective_layout(accelerated, img_size, stage3_depth(name, model_kwargs))
        else:
            model = timm.create_model(name, num_classes=int(metadata["num_classes"]), img_size=img_size,
                                      **model_kwargs)
            layouts[variant] = effective_layout(set_acceleration(model, accelerated), img_size, len(model.blocks))
            load_checkpoint(model, checkpoint)
            scores = evaluate(model.to(runtime.device), loader, runtime.device, distributed=runtime.distributed)
            if kept and runtime.is_main:
                write_atomically(kept, json.dumps({"export_sha256": digest, "scores": scores}).encode())
        results[variant] = scores
    reference = "baseline" if "baseline" in results else variants[0]
    speeds = {variant: scores["local_images"] / scores["forward_seconds"] if scores["forward_seconds"] else math.nan
              for variant, scores in results.items()}  # NaN on a rank whose share of the images is empty
    rows = []
    for variant, scores in results.items():
        for metric, value in (("top1", scores["top1"]), ("top5", scores["top5"]), ("images_per_s", speeds[variant]),
                              ("speedup", speeds[variant] / speeds[reference])):
            rows.append(MetricRecord(TASK, dataset, split, metric, value, 0, name, variant, layouts[variant]).to_dict())
    return rows


def file_sha256(url: str) -> str:
    """The SHA-256 of the file at ``url`` (any fsspec URL), read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def read_kept_scores(url: str, export_sha256: str) -> Optional[dict[str, float]]:
    """The scores a finished evaluation of the export with ``export_sha256`` left at ``url``; ``None`` when
    there is none, or it is of other weights."""
    filesystem, path = fsspec.core.url_to_fs(url)
    if not filesystem.exists(path):
        return None
    kept = json.loads(filesystem.cat_file(path))
    return kept["scores"] if kept.get("export_sha256") == export_sha256 else None
