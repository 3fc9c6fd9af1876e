"""Every acceleration variant against the baseline on one model object, in one run.

The variants only switch stage 3, so the baseline and each variant are timed on the same weights
in interleaved rounds (the best round counts: a machine busy for a moment favours no variant).
The model is the dense-prediction backbone (``pyramid=True``), what detection and segmentation
run and what Figure 5 of the paper times. Rows carry exactly the results store's benchmark keys;
the store derives the speed-up from the baseline row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from rich.progress import Progress

from itpn.models import AccelerationConfig, create_model, get_variant, set_acceleration

from .measure import Throughput, count_gflops, device_name, measure_latency, measure_throughput, resolve_dtype


@dataclass
class Row:
    """One measurement, with the results store's benchmark keys."""

    model: str
    variant: str
    resolution: int
    batch_size: int
    images_per_s: float
    device: str
    latency_ms: Optional[float]
    memory_mb: Optional[float]
    gflops: Optional[float]
    dtype: str


def variant_config(name: str, window_size: Optional[int]) -> AccelerationConfig:
    config = get_variant(name)
    return config.replace(window_size=window_size) if window_size and config.window_size else config


def benchmark_variants(model_name: str, resolution: int, variants: Sequence[str], *, batch_size: int = 8,
                       device: str = "cpu", dtype: str = "fp32", model_kwargs: Optional[dict[str, Any]] = None,
                       label: Optional[str] = None, window_size: Optional[int] = None, warmup: int = 5,
                       iterations: int = 20, rounds: int = 3, flops_only: bool = False,
                       progress: Optional[Progress] = None) -> list[Row]:
    """Time and count ``baseline`` plus ``variants`` on ``model_name`` (built with ``model_kwargs``) at
    ``resolution``²; ``flops_only`` counts GFLOPs on the meta device without timing."""
    variants = ["baseline"] + [name for name in variants if name != "baseline"]
    for name in variants:
        get_variant(name)  # an unknown name stops here, listing the valid ones
    device_type = torch.device("meta" if flops_only else device)
    dtype_ = resolve_dtype(dtype)
    with torch.device(device_type):
        model = create_model(model_name, pyramid=True, img_size=resolution, **(model_kwargs or {})).eval()
    label = label or model_name
    batch = torch.randn(batch_size, 3, resolution, resolution, device=device_type)
    single = torch.randn(1, 3, resolution, resolution, device=device_type)
    rounds = 0 if flops_only else rounds
    task = progress.add_task(f"{label} {resolution}px", total=len(variants) * (rounds + 1)) if progress else None

    throughput: dict[str, Throughput] = {}
    for round_index in range(rounds):
        for name in variants:
            set_acceleration(model, variant_config(name, window_size))
            result = measure_throughput(model, batch, dtype=dtype_, warmup=warmup, iters=iterations)
            if round_index == 0 or result.images_per_s > throughput[name].images_per_s:
                throughput[name] = result
            if progress:
                progress.advance(task)
    rows = []
    for name in variants:
        set_acceleration(model, variant_config(name, window_size))
        rows.append(Row(
            model=label, variant=name, resolution=resolution, batch_size=batch_size,
            images_per_s=throughput[name].images_per_s if name in throughput else float("nan"),
            device=device_name(device_type), dtype=str(dtype_).removeprefix("torch."),
            latency_ms=None if flops_only else measure_latency(model, single, dtype=dtype_, warmup=warmup,
                                                                    iters=iterations),
            memory_mb=throughput[name].peak_memory_mb if name in throughput else None,
            gflops=count_gflops(model, single, dtype=dtype_),
        ))
        if progress:
            progress.advance(task)
    return rows
