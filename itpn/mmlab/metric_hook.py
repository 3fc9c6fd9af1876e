"""``MetricRecordsHook``: an mmengine run's training curve and validation metrics as results-store rows,
and the mapping of mmdet / mmseg / mmrotate metric names to the store's (``store_name``, ``usable``)."""
from __future__ import annotations

import math
import numbers
import time
from typing import Any, Mapping, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from itpn.engine import CurveLog
from itpn.files import join_url
from itpn.records import MetricRecord

CURVE_NAME = "curve.jsonl"
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


def written_after_checkpoint(row: Mapping[str, Any]) -> bool:
    """Whether a curve row of a checkpoint's iteration was written after that checkpoint: mmengine saves
    in ``after_train_iter`` and validates after it (``IterBasedTrainLoop.run``), so the validation rows of
    that iteration come later and a run resumed from it writes them again."""
    return row["split"] == "val"


@HOOKS.register_module()
class MetricRecordsHook(Hook):
    """Writes the training curve as results-store rows and keeps the latest validation metrics.

    What the curve and ``seconds_per_iteration`` need of the iterations before a checkpoint (the losses
    since the last logged row, every iteration's time) is saved in the checkpoint (``itpn_metric_records``)
    and put back when a run resumes from it, so a killed and resumed run logs the rows an uninterrupted
    one does. ``evaluated`` holds every metric of the last validation (usable or not) and
    ``validated_at`` its iteration (``None``: no validation ran in this process)."""

    priority = "LOW"

    def __init__(self, task: str, dataset: str, model: str, variant: str, output_url: str, log_every: int = 10):
        self.task, self.dataset, self.model, self.variant = task, dataset, model, variant
        self.output_url = output_url
        self.log_every = log_every
        self.latest: dict[str, float] = {}
        self.evaluated: dict[str, Any] = {}
        self.validated_at: Optional[int] = None
        self.curve: Optional[CurveLog] = None
        self.losses: list[float] = []
        self.iteration_start = 0.0
        self.iteration_seconds: list[float] = []  # forward, backward and step of every iteration of the run

    def record(self, split: str, name: str, value: float, step: int) -> dict[str, Any]:
        return MetricRecord(self.task, self.dataset, split, name, value, step, self.model, self.variant).to_dict()

    def before_run(self, runner: Runner) -> None:
        if self.curve is None and runner.rank == 0 and not runner._resume:  # a fresh run or an evaluation
            self.curve = CurveLog(join_url(self.output_url, CURVE_NAME), None)

    def before_train(self, runner: Runner) -> None:
        if self.curve is None and runner.rank == 0 and runner._resume:
            # keep the rows up to the checkpoint training starts from (none: iteration 0)
            self.curve = CurveLog(join_url(self.output_url, CURVE_NAME), runner.iter, written_after_checkpoint)

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
        self.evaluated = {store_name(k): v for k, v in (metrics or {}).items()}
        self.validated_at = runner.iter
        self.latest = {name: float(value) for name, value in self.evaluated.items() if usable(value)}
        if self.curve is not None:
            self.curve.write([self.record("val", name, value, runner.iter) for name, value in self.latest.items()])

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["itpn_metric_records"] = {"losses": list(self.losses),
                                             "iteration_seconds": list(self.iteration_seconds)}
        if self.curve is not None:  # a curve in object storage is uploaded with each checkpoint
            self.curve.publish()

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        saved = checkpoint.get("itpn_metric_records")
        if runner._resume and saved is not None:  # not for the fine-tuned weights an evaluation loads
            self.losses = list(saved["losses"])
            self.iteration_seconds = list(saved["iteration_seconds"])

    def after_run(self, runner: Runner) -> None:
        if self.curve is not None:
            self.curve.publish()
