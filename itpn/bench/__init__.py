"""Measurement helpers shared by the benchmark scripts under ``benchmarks/``."""
from .measure import (
    Throughput,
    count_gflops,
    device_name,
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
    "Throughput", "count_gflops", "device_name", "inference_context", "matmul_peak_tflops", "measure_latency",
    "measure_throughput", "measure_training_step", "peak_memory_mb", "resolve_dtype", "synchronize",
]
