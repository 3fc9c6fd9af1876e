"""Speed of one integral pre-training update (``itpn.pretrain.Trainer``) on synthetic images.

An update is what the trainer does per step: masks, the teacher's forward on the visible units,
the student's forward (backbone + pyramid on the visible units, decoder on all units), backward,
AdamW step and the EMA update. FLOPs are counted by ``torch.utils.flop_counter`` over one
forward + backward (the work actually done: visible tokens in the encoder, every token in the
decoder, the teacher's forward). Data loading is excluded: the images are already on the device.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .measure import count_gflops, synchronize


@dataclass(frozen=True)
class PretrainingStep:
    """One measured update: ``images_per_s``, milliseconds per update, peak CUDA memory (MiB, None on
    CPU), GFLOPs per image of forward + backward, and the masking it ran with."""

    images_per_s: float
    step_ms: float
    peak_memory_mb: Optional[float]
    gflops_per_image: float
    visible_units: int
    batch_size: int


def measure_pretraining_step(values: dict[str, Any], *, warmup: int = 3, iters: int = 10) -> PretrainingStep:
    """Time ``iters`` updates (after ``warmup``) of a ``Trainer`` built from ``PretrainConfig`` ``values``
    (model, teacher, batch_size, amp_dtype, device, mask_ratio, ...; the run folder is a temporary one)."""
    from itpn.pretrain import PretrainConfig, Trainer

    with tempfile.TemporaryDirectory() as output:
        config = PretrainConfig.from_dict({"total_steps": 1000, "warmup_steps": 10, "progress": False,
                                           "num_workers": 0, "resume": False, **values, "output_url": output})
        sizing_batch = [torch.zeros(3, config.img_size, config.img_size)] * config.batch_size  # sizes the schedule
        trainer = Trainer(config, sizing_batch)
        device = trainer.runtime.device
        images = torch.rand(config.batch_size, 3, config.img_size, config.img_size, device=device)
        generator = torch.Generator().manual_seed(0)

        def update() -> None:
            trainer.forward_backward(images, trainer.masks(config.batch_size, generator).to(device))
            trainer.optimizer_step()

        mask = trainer.masks(config.batch_size, generator).to(device)
        gflops = count_gflops(lambda: trainer.forward_backward(images, mask))
        trainer.optimizer.zero_grad(set_to_none=True)
        for _ in range(warmup):
            update()
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(iters):
            update()
        synchronize(device)
        seconds = (time.perf_counter() - start) / iters
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        return PretrainingStep(images_per_s=config.batch_size / seconds, step_ms=1000 * seconds, peak_memory_mb=peak,
                               gflops_per_image=gflops / config.batch_size,
                               visible_units=trainer.masks.num_units - trainer.masks.num_masked,
                               batch_size=config.batch_size)
