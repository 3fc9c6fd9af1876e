"""Measurement helpers shared by the benchmark scripts under ``benchmarks/``."""
from .measure import (
    count_gflops,
    device_name,
    inference_context,
    measure_latency,
    measure_throughput,
    peak_memory_mb,
    resolve_dtype,
    synchronize,
)

__all__ = [
    "count_gflops", "device_name", "inference_context", "measure_latency", "measure_throughput", "peak_memory_mb",
    "resolve_dtype", "synchronize",
]
