"""Throughput, latency, peak memory and FLOPs of a model's forward pass, on CPU or CUDA.

Every function runs the forward in inference mode, under autocast when ``dtype`` is not
float32, and synchronises CUDA around its clocks. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode``; importing this module also teaches it the CPU
kernel of ``scaled_dot_product_attention``, which it does not count by itself, so CPU and
CUDA report the same attention FLOPs.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils import flop_counter

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


@contextmanager
def inference_context(device: torch.device | str, dtype: torch.dtype = torch.float32) -> Iterator[None]:
    """Inference mode, plus autocast to ``dtype`` unless it is float32."""
    device = torch.device(device)
    with torch.inference_mode():
        if dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def measure_throughput(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                       warmup: int = 3, iterations: int = 10, min_seconds: float = 0.0) -> float:
    """Images per second of ``model(inputs)``: ``warmup`` untimed calls, then at least ``iterations``
    timed calls (more until ``min_seconds`` have passed)."""
    device = inputs.device
    with inference_context(device, dtype):
        for _ in range(warmup):
            model(inputs)
        calls, elapsed = 0, 0.0
        while calls < iterations or elapsed < min_seconds:
            elapsed += _timed(lambda: model(inputs), device)
            calls += 1
    return inputs.shape[0] * calls / elapsed


def measure_latency(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                    warmup: int = 3, iterations: int = 10) -> float:
    """Median milliseconds of one ``model(inputs)`` call (pass a batch of one for latency)."""
    device = inputs.device
    with inference_context(device, dtype):
        for _ in range(warmup):
            model(inputs)
        times = [_timed(lambda: model(inputs), device) for _ in range(iterations)]
    return 1000.0 * statistics.median(times)


def peak_memory_mb(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32
                   ) -> Optional[float]:
    """Peak CUDA memory allocated during ``model(inputs)`` (weights included), in MiB; None on CPU,
    where the process's resident set does not isolate one forward pass."""
    device = inputs.device
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    with inference_context(device, dtype):
        model(inputs)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def count_gflops(model: nn.Module, inputs: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> float:
    """GFLOPs of one ``model(inputs)`` call for the whole batch (a multiply-add counts as two FLOPs)."""
    counter = flop_counter.FlopCounterMode(display=False)
    with inference_context(inputs.device, dtype), counter:
        model(inputs)
    return counter.get_total_flops() / 1e9
