"""Measurement helpers shared by the benchmark scripts under ``benchmarks/``."""
from .measure import (
    Throughput,
    best_of_rounds,
    count_gflops,
    device_name,
    forward_peak_memory_mb,
    inference_context,
    matmul_peak_tflops,
    measure_latency,
    measure_throughput,
    measure_training_step,
    peak_memory_mb,
    resolve_dtype,
    synchronize,
)

__all__ = [
    "Throughput", "best_of_rounds", "count_gflops", "device_name", "forward_peak_memory_mb", "inference_context",
    "matmul_peak_tflops", "measure_latency", "measure_throughput", "measure_training_step", "peak_memory_mb",
    "resolve_dtype", "synchronize",
]
