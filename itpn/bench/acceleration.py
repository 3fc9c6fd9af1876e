"""Every acceleration variant against the baseline on one model object, in one run.

The variants only switch stage 3, so the baseline and each variant are timed on the same weights
in interleaved rounds (the best round counts: a machine busy for a moment favours no variant).
The model is the dense-prediction backbone (``pyramid=True``), what detection and segmentation
run and what Figure 5 of the paper times. The rows are ``itpn.records.BenchmarkRecord``, what the results
store keeps; the store derives the speed-up from the baseline row. Each row carries the layout stage 3
ran with (``itpn.models.layout.effective_layout``), so the dashboard pairs it only with accuracies measured
at the same input size and layout.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

from itpn.models import create_model, effective_layout, get_variant, resolve_variant, set_acceleration
from itpn.records import BenchmarkRecord

from .measure import Throughput, count_gflops, device_name, measure_latency, measure_throughput, resolve_dtype

if TYPE_CHECKING:  # rich draws the progress of the benchmark scripts; the library does not need it
    from rich.progress import Progress


def gflops_by_variant(model_name: str, size: tuple[int, int], variants: Sequence[str], *,
                      model_kwargs: Optional[dict[str, Any]] = None) -> dict[str, float]:
    """GFLOPs per image (a multiply-add counts as two) of the dense-prediction ``model_name``
    (``pyramid=True``) at ``size`` (H, W) px under ``baseline`` and each of ``variants``, counted on
    the meta device: no weights, no timing, any size in seconds."""
    variants = ["baseline"] + [name for name in variants if name != "baseline"]
    with torch.device("meta"):
        model = create_model(model_name, pyramid=True, img_size=tuple(size), **(model_kwargs or {})).eval()
        image = torch.empty(1, 3, *size)
        flops = {}
        for name in variants:
            set_acceleration(model, name)
            flops[name] = count_gflops(model, image)
    return flops


def flop_table(model_name: str, sizes: Sequence[tuple[int, int]], variants: Sequence[str], *,
               label: Optional[str] = None, model_kwargs: Optional[dict[str, Any]] = None) -> str:
    """Markdown table of the FLOPs each variant removes: baseline GFLOPs over the variant's, one row
    per size (the README's table is this function's output, pinned by a test)."""
    variants = [name for name in variants if name != "baseline"]
    lines = [f"| {label or model_name} | " + " | ".join(f"`{name}`" for name in variants) + " |",
             "|---|" + "---|" * len(variants)]
    for height, width in sizes:
        flops = gflops_by_variant(model_name, (height, width), variants, model_kwargs=model_kwargs)
        side = f"{height}²" if height == width else f"{height}×{width}"
        ratios = " | ".join(f"{flops['baseline'] / flops[name]:.2f}×" for name in variants)
        lines.append(f"| {side} (baseline {flops['baseline']:.0f} GFLOPs) | {ratios} |")
    return "\n".join(lines)


def benchmark_variants(model_name: str, resolution: int, variants: Sequence[str], *, batch_size: int = 8,
                       device: str = "cpu", dtype: str = "fp32", model_kwargs: Optional[dict[str, Any]] = None,
                       label: Optional[str] = None, window_size: Optional[int] = None, warmup: int = 5,
                       iterations: int = 20, rounds: int = 3, pyramid: bool = True, clock: str = "wall",
                       progress: Optional[Progress] = None) -> list[BenchmarkRecord]:
    """Time and count ``baseline`` plus ``variants`` on ``model_name`` (built with ``model_kwargs``;
    with its feature pyramid unless ``pyramid`` is False) at ``resolution``²: throughput at
    ``batch_size`` in interleaved rounds (every variant once per round; each variant's best round
    counts), latency at batch 1 (from the same calls when ``batch_size`` is 1), GFLOPs per image.
    ``clock``: ``wall`` or ``process`` (CPU seconds on one thread, for a CPU shared with other work;
    see ``measure_throughput``). ``window_size`` sets the windows of the windowed variants
    (``resolve_variant``); every row records its layout."""
    variants = ["baseline"] + [name for name in variants if name != "baseline"]
    for name in variants:
        get_variant(name)  # an unknown name stops here, listing the valid ones
    device_type = torch.device(device)
    dtype_ = resolve_dtype(dtype)
    with torch.device(device_type):
        kwargs = {**({} if pyramid else {"num_classes": 0}), **(model_kwargs or {})}
        model = create_model(model_name, pyramid=pyramid, img_size=resolution, **kwargs).eval()
    label = label or model_name
    batch = torch.randn(batch_size, 3, resolution, resolution, device=device_type)
    single = batch[:1]
    task = progress.add_task(f"{label} {resolution}px", total=len(variants) * (rounds + 1)) if progress else None

    throughput: dict[str, Throughput] = {}
    for round_index in range(rounds):
        for name in variants:
            set_acceleration(model, resolve_variant(name, window_size))
            result = measure_throughput(model, batch, dtype=dtype_, warmup=warmup, iters=iterations, clock=clock)
            if round_index == 0 or result.images_per_s > throughput[name].images_per_s:
                throughput[name] = result
            if progress:
                progress.advance(task)
    rows = []
    for name in variants:
        config = set_acceleration(model, resolve_variant(name, window_size))
        latency = throughput[name].latency_ms if batch_size == 1 else measure_latency(
            model, single, dtype=dtype_, warmup=warmup, iters=iterations, clock=clock)
        rows.append(BenchmarkRecord(
            model=label, variant=name, resolution=resolution, batch_size=batch_size,
            images_per_s=throughput[name].images_per_s, device=device_name(device_type),
            dtype=str(dtype_).removeprefix("torch."), latency_ms=latency,
            memory_mb=throughput[name].peak_memory_mb, gflops=count_gflops(model, single, dtype=dtype_),
            layout=effective_layout(config, resolution, len(model.blocks)),
        ))
        if progress:
            progress.advance(task)
    return rows
