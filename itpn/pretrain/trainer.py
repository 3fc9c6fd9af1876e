"""The pre-training loop: one process, or many under ``torchrun`` (DDP, or FSDP2 with ``fsdp=True``).

An update is ``accum_steps`` micro-batches on every process; ``step`` counts updates. Every
``checkpoint_every`` updates rank 0 writes ``checkpoint.pt`` atomically with the model, optimiser,
scheduler, EMA teacher, gradient scaler and the position in the data order (``itpn.engine`` holds the
checkpoint, the resume rule, the data order and the curve log ``metrics.jsonl``). Randomness is
drawn from generators seeded by the position: augmentation and masks by the sample's place in the
epoch's order, drop path by ``(seed, step, micro-step, rank)``. So the RNG state is a function of
the position (the checkpoint stores the seed and the step), a resumed run repeats an uninterrupted
one exactly, and without drop path a run on N processes repeats a one-process run with the same
global batch. At the end the backbone + pyramid weights
(``model.state_dict()`` of the ``pyramid=True`` model) are exported as ``backbone.safetensors``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import timm
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from itpn.data.order import sample_seed, step_seed, updates_per_epoch
from itpn.engine import Checkpoint, CheckpointFormat, CurveLog, data_parallel, epoch_loader
from itpn.files import join_url
from itpn.runtime import Runtime, setup_runtime
from itpn.models import HiViT, save_safetensors
from itpn.models.checkpoint import grid_metadata
from itpn.models.hivit import PATCH_SIZE

from .config import EXPORT_NAME, PretrainConfig
from .data import SkipUnreadable, clip_pretrain_transform, collate_images, pretrain_transform
from .masking import Mask, MaskGenerator
from .objective import ClipDistillModel, IntegralPretrainModel
from .teachers import ClipTeacher, EMATeacher, check_clip_checkpoint

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
# An lr above this many times the linear-scaled one (blr * global batch / 256) is warned about. Ours, from
# issue 11 item 8: at 107x (lr 1e-3, batch 16) pixel MIM alone took the generated ImageNet's fine-tune from
# 95.5 % (no pre-training) to 59.5 % top-1, and at 53x a real 10-class set from 43.7 % to 26.5 %; at 32x,
# 21x and 11x (lr 3e-4, 2e-4, 1e-4) it fine-tuned to 94.0, 95.5 and 97.5 %.
LR_WARN_RATIO = 50.0


def _read_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (before 2026-11-30) meant by teacher='clip' what is now 'clip_visible_distill', took the EMA
    teacher's MFM targets at the visible units and did not record the resolved schedule."""
    config = dict(state["config"])
    config["teacher"] = {"clip": "clip_visible_distill"}.get(config.get("teacher"), config.get("teacher"))
    config.setdefault("mfm_targets", "visible")
    return {**state, "config": config}


# A resumed run may change where and how it runs, not what it trains: every other setting (the model, the
# objective and its teacher, the optimiser, the schedule, the seed) must equal the checkpoint's; batch_size and
# accum_steps may trade against the process count as long as the global batch stays (checked on its own).
CHECKPOINT_FORMAT = CheckpointFormat(
    name="itpn-pretrain/2", kind="pre-training",
    free=frozenset({"recipe", "data_url", "data_split", "clip_checkpoint", "num_workers", "batch_size", "accum_steps",
                    "amp_dtype", "device", "fsdp", "compile", "output_url", "checkpoint_every", "resume",
                    "stop_after_steps", "progress"}),
    older={"itpn-pretrain/1": _read_format_1})


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class PretrainResult:
    checkpoint_url: Optional[str]  # last checkpoint written (None if none was)
    export_url: str  # backbone + pyramid safetensors
    metrics_url: str  # one JSON object per update
    steps_done: int
    total_steps: int
    final_loss: float
    skipped_images: int


# --- building -------------------------------------------------------------------------------
def build_encoder(config: PretrainConfig) -> HiViT:
    return timm.create_model(config.model, pyramid=config.integral, img_size=config.img_size,
                             drop_path_rate=config.drop_path, **config.model_kwargs)


def build_objective(config: PretrainConfig, clip_dim: Optional[int] = None
                    ) -> IntegralPretrainModel | ClipDistillModel:
    """The model ``config.teacher`` asks for: the released iTPN-CLIP model for ``clip`` (``clip_dim`` =
    the teacher's width), else the integral pixel-MIM model with its MFM heads."""
    if config.teacher == "clip":
        if not clip_dim:
            raise ValueError("teacher='clip' needs clip_dim, the width of the CLIP teacher's output")
        return ClipDistillModel(build_encoder(config), clip_dim, loss=config.feature_loss,
                                targets=config.clip_targets, aux_weight=config.clip_aux_weight,
                                mask_at=config.clip_mask_at)
    mfm = {"ema": "stages", "clip_visible_distill": "clip_visible", "none": "none"}[config.teacher]
    return IntegralPretrainModel(
        build_encoder(config), mfm, clip_dim=clip_dim, mfm_weight=config.mfm_weight, mfm_loss=config.feature_loss,
        mfm_targets=config.mfm_targets, decoder_dim=config.decoder_dim, decoder_depth=config.decoder_depth,
        decoder_heads=config.decoder_heads, norm_pix_loss=config.norm_pix_loss,
        sincos_pos_embed=config.pos_embed_init == "sincos")


def build_dataset(config: PretrainConfig, dataset: Optional[Dataset], teacher_size: Optional[int] = None
                  ) -> SkipUnreadable:
    """The images, augmented; with ``teacher_interpolation`` each sample is a (student view, CLIP teacher view)
    pair cut from one crop (``clip_pretrain_transform``; ``teacher_size``: the teacher's input side)."""
    if config.teacher_interpolation is not None:
        transform = clip_pretrain_transform(config.img_size, teacher_size, config.min_crop_scale, config.color_jitter,
                                            config.teacher_interpolation)
    else:
        transform = pretrain_transform(config.img_size, config.min_crop_scale, config.color_jitter)
    if dataset is None:
        if not config.data_url:
            raise ValueError("no data: pass a dataset to run_pretraining or set data_url to an image folder "
                             "(<data_url>/<data_split>/<class>/<image>)")
        from itpn.data import ImageNetFolder

        dataset = ImageNetFolder(config.data_url, config.data_split, strict=True)
    return SkipUnreadable(dataset, transform)


def _shard(module: nn.Module, blocks: nn.ModuleList) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in blocks:
        fully_shard(block)
    fully_shard(module)


# --- the trainer ----------------------------------------------------------------------------
class Trainer:
    """Holds the model, teacher, optimiser and schedule of one run; ``fit`` trains it."""

    def __init__(self, config: PretrainConfig, dataset: Optional[Dataset] = None, runtime: Optional[Runtime] = None):
        self.config = config
        if config.uses_clip:  # fail before anything is built
            check_clip_checkpoint(config.clip_checkpoint)
        self.runtime = runtime or setup_runtime(config.device)
        device = self.runtime.device
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        grid = (config.img_size // PATCH_SIZE, config.img_size // PATCH_SIZE)
        self.clip_teacher = None
        if config.uses_clip:
            self.clip_teacher = ClipTeacher(config.clip_model, config.clip_checkpoint, grid).to(device)
        self.data = build_dataset(config, dataset, self.clip_teacher.input_size[0] if self.clip_teacher else None)
        self.global_batch = config.batch_size * config.accum_steps * self.runtime.world_size
        self.updates_per_epoch = updates_per_epoch(len(self.data), config.batch_size, config.accum_steps,
                                                   self.runtime.world_size, config.data_url or "the data set")
        self.total_steps = config.total_steps or config.epochs * self.updates_per_epoch
        warmup = config.warmup_steps if config.warmup_steps is not None else round(
            config.warmup_epochs * self.updates_per_epoch)
        self.warmup_steps = min(warmup, self.total_steps - 1)

        self.objective = build_objective(config, self.clip_teacher.dim if self.clip_teacher else None).to(device)
        self.ema_teacher = EMATeacher(self.objective.encoder, config.ema_momentum, config.mfm_targets).to(device) \
            if config.teacher == "ema" else None
        self.masks = MaskGenerator(grid, config.mask_ratio, config.mask_mode)

        linear_lr = config.blr * self.global_batch / 256
        self.lr = config.lr if config.lr is not None else linear_lr
        if self.lr > LR_WARN_RATIO * linear_lr:
            log.warning("pre-training lr %.3g is %.0fx the linear-scaled %.3g (blr %.3g x global batch %d / 256, "
                        "the paper's rule): pixel MIM at such an lr has destroyed the features it pre-trains "
                        "(fine-tuning from the export fell below no pre-training); lower lr or unset it",
                        self.lr, self.lr / linear_lr, linear_lr, config.blr, self.global_batch)
        self.model = self._wrap(self.objective)
        self.optimizer = create_optimizer_v2(self.objective, opt="adamw", lr=self.lr,
                                             weight_decay=config.weight_decay, betas=config.betas, eps=config.eps)
        self.scheduler = CosineLRScheduler(self.optimizer, t_initial=self.total_steps - self.warmup_steps,
                                           lr_min=config.min_lr, warmup_t=self.warmup_steps,
                                           warmup_lr_init=min(1e-6, self.lr), warmup_prefix=True, t_in_epochs=False)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[config.amp_dtype]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype is torch.float16)
        self.step = 0
        self.skipped_images = 0
        self.last_loss = float("nan")  # the loss of the last update (kept in checkpoints for a resumed finished run)
        self.last_checkpoint: Optional[str] = None
        self.checkpoint = Checkpoint(config.output_url, CHECKPOINT_FORMAT, self.runtime, config.to_dict(),
                                     self.global_batch, self.schedule())
        self.checkpoint_url = self.checkpoint.url

    def _wrap(self, objective: nn.Module) -> nn.Module:
        model: nn.Module = objective
        if self.config.fsdp:
            if not self.runtime.distributed:
                raise ValueError("fsdp=True shards the model over processes: launch with torchrun")
            _shard(objective, objective.encoder.blocks)
            if self.ema_teacher is not None:
                _shard(self.ema_teacher, self.ema_teacher.backbone.blocks)
        else:
            model = data_parallel(objective, self.runtime)
        if self.config.compile:
            model = torch.compile(model)
        return model

    # --- one update -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.runtime.device.type, dtype=self.amp_dtype)

    def gradient_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-step of an update."""
        if enabled or not self.runtime.distributed:
            return contextlib.nullcontext()
        if self.config.fsdp:
            self.objective.set_requires_gradient_sync(False)
            return _restore_gradient_sync(self.objective)
        return self.model.no_sync()

    def teacher_targets(self, images: torch.Tensor, mask: Mask):
        teacher = self.ema_teacher or self.clip_teacher
        if teacher is None:
            return None
        with self.autocast():
            return teacher(images, mask)

    def forward_backward(self, images: torch.Tensor, mask: Mask, sync: bool = True,
                         teacher_images: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Loss terms of one micro-batch; the backward pass of ``loss / accum_steps`` is done. The teacher
        sees ``teacher_images`` (its own view of the same crops) when given, else ``images``."""
        targets = self.teacher_targets(images if teacher_images is None else teacher_images, mask)
        with self.gradient_sync(sync):
            with self.autocast():
                losses = self.model(images, mask, targets)
            self.scaler.scale(losses["loss"] / self.config.accum_steps).backward()
        return {name: value.detach() for name, value in losses.items()}

    def optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        grad_norm = float("nan")
        if self.config.clip_grad:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.config.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema_teacher is not None:
            self.ema_teacher.update(self.objective.encoder)
        return grad_norm

    def _reduce(self, totals: dict[str, torch.Tensor], skipped: int) -> dict[str, float]:
        names = sorted(totals)
        packed = torch.stack([totals[name].float() for name in names] + [torch.tensor(float(skipped),
                                                                                      device=self.runtime.device)])
        if self.runtime.distributed:
            dist.all_reduce(packed)
            packed[:-1] /= self.runtime.world_size
        values = packed.tolist()
        return dict(zip(names + ["skipped"], values))

    # --- checkpoints ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if self.config.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                                 get_optimizer_state_dict)

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model = get_model_state_dict(self.objective, options=options)
            optimizer = get_optimizer_state_dict(self.objective, self.optimizer, options=options)
            teacher = get_model_state_dict(self.ema_teacher, options=options) if self.ema_teacher else None
        else:
            model = self.objective.state_dict()
            optimizer = self.optimizer.state_dict()
            teacher = self.ema_teacher.state_dict() if self.ema_teacher else None
        return {"step": self.step, "model": model, "optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                "ema_teacher": teacher, "scaler": self.scaler.state_dict(),
                "rng": {"seed": self.config.seed, "scheme": "seeded by sample position and (step, micro-step, rank)"},
                "skipped_images": self.skipped_images, "last_loss": self.last_loss,
                "world_size": self.runtime.world_size}

    def schedule(self) -> dict[str, Any]:
        """The schedule as run (resolved from epochs, the data size and the batch): refused if it changes."""
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "peak_lr": self.lr}

    def save_checkpoint(self) -> None:
        self.checkpoint.save(self._state())  # every rank takes part in gathering FSDP shards
        self.last_checkpoint = self.checkpoint_url

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a checkpoint ``Checkpoint.load`` has read and found resumable."""
        if self.config.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)

            options = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.objective, state["model"], options=options)
            set_optimizer_state_dict(self.objective, self.optimizer, state["optimizer"], options=options)
            if self.ema_teacher is not None:
                set_model_state_dict(self.ema_teacher, state["ema_teacher"], options=options)
        else:
            try:
                self.objective.load_state_dict(state["model"])
            except RuntimeError as error:
                raise ValueError(f"cannot resume from {self.checkpoint_url}: its weights do not fit this run's "
                                 f"{type(self.objective).__name__} although the settings agree (written by other "
                                 f"code?): {error}") from error
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema_teacher is not None:
                self.ema_teacher.load_state_dict(state["ema_teacher"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.skipped_images = state["skipped_images"]
        self.last_loss = state.get("last_loss", float("nan"))  # absent from checkpoints of before 2026-11-25
        self.scheduler.step_update(self.step)
        self.last_checkpoint = self.checkpoint_url

    def export(self) -> str:
        """Backbone + pyramid weights, keys exactly as ``timm.create_model(model, pyramid=True)``."""
        url = join_url(self.config.output_url, EXPORT_NAME)
        if self.config.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            weights = get_model_state_dict(self.objective.encoder, options=options)
        else:
            weights = self.objective.encoder.state_dict()
        if self.runtime.is_main:
            metadata = {"model": self.config.model, "model_kwargs": json.dumps(self.config.model_kwargs),
                        "img_size": str(self.config.img_size), "step": str(self.step),
                        "teacher": self.config.teacher, "integral": str(self.config.integral).lower(),
                        **grid_metadata(self.objective.encoder)}
            save_safetensors(weights, url, metadata)
        return url

    # --- the loop ---------------------------------------------------------------------------
    def batches(self, epoch: int, start_update: int) -> Iterator[tuple[torch.Tensor, int]]:
        """This process's micro-batches (images, unreadable count) of ``epoch`` from ``start_update`` on."""
        config = self.config
        return iter(epoch_loader(self.data, config.batch_size, config.accum_steps, self.runtime, config.seed, epoch,
                                 start_update, config.num_workers, collate_images))

    def mask_seeds(self, epoch: int, update: int, micro: int) -> list[int]:
        """Seeds of this process's masks in a micro-batch, keyed by the samples' places in the
        epoch's order (as ``EpochSampler`` lays them out)."""
        first = (update * self.global_batch + micro * self.config.batch_size * self.runtime.world_size
                 + self.runtime.rank * self.config.batch_size)
        return [sample_seed(self.config.seed + 1, epoch, position)
                for position in range(first, first + self.config.batch_size)]

    def fit(self) -> PretrainResult:
        config, runtime = self.config, self.runtime
        state = self.checkpoint.load() if config.resume else None
        if state is not None:
            self.restore(state)
            log.info("resumed from %s at step %d", self.checkpoint_url, self.step)
        metrics = CurveLog(join_url(config.output_url, METRICS_NAME),
                           None if state is None else self.step) if runtime.is_main else None
        end = self.total_steps if config.stop_after_steps is None else min(self.total_steps, config.stop_after_steps)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="pre-training", unit="step",
                   disable=not (runtime.is_main and config.progress), dynamic_ncols=True)
        self.objective.train()
        batches: Optional[Iterator] = None
        while self.step < end:
            epoch, update = divmod(self.step, self.updates_per_epoch)
            if batches is None or update == 0:
                batches = self.batches(epoch, update)
            started = time.perf_counter()
            totals: dict[str, torch.Tensor] = {}
            skipped = 0
            for micro in range(config.accum_steps):
                images, unreadable = next(batches)
                skipped += unreadable
                teacher_images = None
                if isinstance(images, tuple):  # (student view, teacher view)
                    images, teacher_images = (view.to(runtime.device, non_blocking=True) for view in images)
                images = images.to(runtime.device, non_blocking=True)
                torch.manual_seed(step_seed(config.seed, self.step, micro, runtime.rank))  # drop path
                mask = self.masks.per_sample(self.mask_seeds(epoch, update, micro)).to(runtime.device)
                losses = self.forward_backward(images, mask, sync=micro == config.accum_steps - 1,
                                               teacher_images=teacher_images)
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + value.float() / config.accum_steps
            reduced = self._reduce(totals, skipped)
            if not all(math.isfinite(value) for value in reduced.values()):
                bad = {name: value for name, value in reduced.items() if not math.isfinite(value)}
                bar.close()
                raise NonFiniteLossError(
                    f"non-finite loss {bad} at step {self.step + 1} (epoch {epoch}); training stopped before the "
                    f"optimiser step. Last good checkpoint: {self.last_checkpoint or 'none (no checkpoint written yet)'}."
                    f" Check the input images, or use amp_dtype='bf16'/'fp32' and resume; a lower learning rate is another run"
                    f" (another output_url, or resume=False).")
            grad_norm = self.optimizer_step()
            self.step += 1
            self.scheduler.step_update(self.step)
            self.skipped_images += int(reduced.pop("skipped"))
            elapsed = time.perf_counter() - started
            self.last_loss = reduced["loss"]
            if metrics is not None:
                record = {"step": self.step, "epoch": epoch, **reduced, "lr": self.optimizer.param_groups[0]["lr"],
                          "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
                          "img_per_s": self.global_batch / elapsed, "skipped_images": self.skipped_images}
                metrics.write([record])
            bar.set_postfix(loss=f"{self.last_loss:.4f}", img_s=f"{self.global_batch / elapsed:.1f}")
            bar.update(1)
            if self.step % config.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
                if metrics is not None:
                    metrics.publish()
        bar.close()
        export_url = self.export()
        if metrics is not None:
            metrics.publish()
        if runtime.distributed:
            dist.barrier()
        return PretrainResult(checkpoint_url=self.last_checkpoint, export_url=export_url,
                              metrics_url=join_url(config.output_url, METRICS_NAME), steps_done=self.step,
                              total_steps=self.total_steps, final_loss=self.last_loss,
                              skipped_images=self.skipped_images)


@contextlib.contextmanager
def _restore_gradient_sync(module: nn.Module) -> Iterator[None]:
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def run_pretraining(config: PretrainConfig, dataset: Optional[Dataset] = None) -> PretrainResult:
    """Train (or resume) the run ``config`` describes; under ``torchrun`` every process calls this."""
    return Trainer(config, dataset).fit()
