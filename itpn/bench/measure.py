"""Throughput, latency, peak memory and FLOPs of forward passes and training steps, on CPU or CUDA.

Every timing runs under autocast when ``dtype`` is not float32 (forward passes also in inference
mode) and synchronises CUDA around its clocks. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode``; importing this module also teaches it the CPU
kernel of ``scaled_dot_product_attention``, which it does not count by itself, so CPU and CUDA
report the same attention FLOPs.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils import flop_counter

CLOCKS = ("wall", "process")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def _register_cpu_attention_flops() -> None:
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(forward)
        def _cpu_attention(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(backward)
        def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args: Any,
                                    out_shape=None, **kwargs: Any) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_attention_flops()


@dataclass(frozen=True)
class Throughput:
    """Speed of repeated calls on one batch: images/s, median milliseconds per call, and the peak
    CUDA memory during the timed calls in MiB (None on CPU)."""

    images_per_s: float
    latency_ms: float
    peak_memory_mb: Optional[float]


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"fp32"``, ``"bf16"``, ``"fp16"`` (or their long names, or a dtype) -> the torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}") from None


def device_name(device: torch.device | str) -> str:
    """``"cpu"`` or the CUDA card's name (e.g. ``"NVIDIA H100 80GB HBM3"``), for result rows."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    return nullcontext() if dtype == torch.float32 else torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def inference_context(device: torch.device | str, dtype: torch.dtype = torch.float32) -> Iterator[None]:
    """Inference mode, plus autocast to ``dtype`` unless it is float32."""
    with torch.inference_mode(), _autocast(torch.device(device), dtype):
        yield


@contextmanager
def _clock(clock: str, device: torch.device) -> Iterator[Callable[[], float]]:
    """The timer of ``clock``: ``wall`` (elapsed seconds) or ``process`` (CPU seconds this process
    spends, on one thread while timing: what the work costs, whatever else shares the CPU)."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; use one of {', '.join(CLOCKS)}")
    if clock == "wall":
        yield time.perf_counter
        return
    if device.type != "cpu":
        raise ValueError(f"clock='process' times CPU work; {device.type} work needs clock='wall'")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield time.process_time
    finally:
        torch.set_num_threads(threads)


def _repeat(run: Callable[[], Any], device: torch.device, warmup: int, iters: int, min_seconds: float,
            clock: str = "wall") -> tuple[list[float], Optional[float]]:
    """Seconds of each timed call of ``run`` (by ``clock``) and the peak CUDA memory (MiB) over them."""
    with _clock(clock, device) as now:
        for _ in range(warmup):
            run()
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        times: list[float] = []
        while len(times) < iters or sum(times) < min_seconds:
            synchronize(device)
            start = now()
            run()
            synchronize(device)
            times.append(now() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return times, peak


def measure_throughput(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                       warmup: int = 3, iters: int = 10, min_seconds: float = 0.0, clock: str = "wall") -> Throughput:
    """Forward passes of ``model(inputs)``: ``warmup`` untimed calls, then at least ``iters`` timed
    ones (more until ``min_seconds`` have passed). ``clock="process"`` counts the CPU seconds of
    this process on one thread instead of elapsed seconds (CPU only): on a CPU shared with other
    work, elapsed time mostly measures the others."""
    with inference_context(inputs.device, dtype):
        times, peak = _repeat(lambda: model(inputs), inputs.device, warmup, iters, min_seconds, clock)
    return Throughput(inputs.shape[0] * len(times) / sum(times), 1000.0 * statistics.median(times), peak)


def measure_latency(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                    warmup: int = 3, iters: int = 10, clock: str = "wall") -> float:
    """Median milliseconds of one ``model(inputs)`` call (pass a batch of one for latency)."""
    return measure_throughput(model, inputs, dtype=dtype, warmup=warmup, iters=iters, clock=clock).latency_ms


def measure_training_step(model: nn.Module, inputs: torch.Tensor, loss_fn: Callable[[Any], torch.Tensor],
                          optimizer: torch.optim.Optimizer, *, dtype: torch.dtype = torch.float32, warmup: int = 2,
                          iters: int = 5, min_seconds: float = 0.0) -> Throughput:
    """Training steps (forward under autocast, ``loss_fn(output).backward()``, ``optimizer.step()``)."""
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(inputs.device, dtype):
            loss = loss_fn(model(inputs))
        loss.backward()
        optimizer.step()

    times, peak = _repeat(step, inputs.device, warmup, iters, min_seconds)
    return Throughput(inputs.shape[0] * len(times) / sum(times), 1000.0 * statistics.median(times), peak)


def peak_memory_mb(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32
                   ) -> Optional[float]:
    """Peak CUDA memory allocated during one ``model(inputs)`` (weights included), in MiB; None on CPU,
    where the process's resident set does not isolate one forward pass."""
    if inputs.device.type != "cuda":
        return None
    with inference_context(inputs.device, dtype):
        return _repeat(lambda: model(inputs), inputs.device, 0, 1, 0.0)[1]


def forward_peak_memory_mb(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32
                           ) -> Optional[float]:
    """Peak CUDA memory one ``model(inputs)`` needs, in MiB: its parameters and buffers plus the most the
    call allocates beyond what was allocated before it, so other models resident on the card do not count
    (``peak_memory_mb`` counts everything allocated). None on CPU."""
    if inputs.device.type != "cuda":
        return None
    own = sum(tensor.numel() * tensor.element_size() for tensor in (*model.parameters(), *model.buffers()))
    synchronize(inputs.device)
    before = torch.cuda.memory_allocated(inputs.device)
    torch.cuda.reset_peak_memory_stats(inputs.device)
    with inference_context(inputs.device, dtype):
        model(inputs)
    synchronize(inputs.device)
    return (own + torch.cuda.max_memory_allocated(inputs.device) - before) / 2**20


def best_of_rounds(measurements: dict[str, Callable[[], Throughput]], rounds: int) -> dict[str, Throughput]:
    """Call every measurement once per round, in turn, for ``rounds`` rounds; each one's fastest round
    counts, so a moment when the machine is busy favours none of them."""
    best: dict[str, Throughput] = {}
    for _ in range(rounds):
        for name, measure in measurements.items():
            result = measure()
            if name not in best or result.images_per_s > best[name].images_per_s:
                best[name] = result
    return best


def count_gflops(model_or_fn: nn.Module | Callable[[], Any], inputs: Optional[torch.Tensor] = None, *,
                 dtype: torch.dtype = torch.float32) -> float:
    """GFLOPs (a multiply-add counts as two) of ``model(inputs)`` in inference mode, or of whatever
    ``model_or_fn()`` runs when no inputs are given (e.g. a forward and backward pass)."""
    counter = flop_counter.FlopCounterMode(display=False)
    if inputs is None:
        with counter:
            model_or_fn()
    else:
        with inference_context(inputs.device, dtype), counter:
            model_or_fn(inputs)
    return counter.get_total_flops() / 1e9


def matmul_peak_tflops(device: torch.device | str, dtype: torch.dtype = torch.float32, size: Optional[int] = None,
                       iters: int = 10) -> float:
    """Achieved TFLOP/s of a square matmul of ``size`` (8192 on CUDA, 1024 on CPU): the ceiling
    against which a model's utilisation is judged on this device."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    times, _ = _repeat(lambda: left @ right, device, 2, iters, 0.0)
    return 2 * size**3 * len(times) / sum(times) / 1e12
