"""The measurement helpers the benchmarks share: FLOPs counted on CPU as on CUDA, timings that
are positive and scale with the batch, and the dtype names the scripts accept."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itpn.bench import (
    count_gflops,
    device_name,
    matmul_peak_tflops,
    measure_latency,
    measure_throughput,
    measure_training_step,
    peak_memory_mb,
    resolve_dtype,
)


class _Attention(nn.Module):
    def forward(self, x):
        return F.scaled_dot_product_attention(x, x, x)


def test_flops_of_a_linear_layer_and_of_cpu_attention():
    assert count_gflops(nn.Linear(64, 32), torch.randn(8, 64)) == pytest.approx(2 * 8 * 64 * 32 / 1e9)
    batch, heads, tokens, dim = 2, 4, 64, 32
    # QK^T and AV: two matmuls of tokens x tokens x dim per head, 2 FLOPs a multiply-add
    expected = 2 * 2 * batch * heads * tokens * tokens * dim / 1e9
    assert count_gflops(_Attention(), torch.randn(batch, heads, tokens, dim)) == pytest.approx(expected)


def test_flops_under_bf16_autocast_match_fp32():
    model = nn.Linear(64, 32)
    inputs = torch.randn(4, 64)
    assert count_gflops(model, inputs, dtype=torch.bfloat16) == count_gflops(model, inputs)


def test_throughput_latency_and_cpu_memory():
    model = nn.Linear(16, 16)
    result = measure_throughput(model, torch.randn(4, 16), warmup=1, iters=3)
    assert result.images_per_s > 0 and result.latency_ms > 0 and result.peak_memory_mb is None
    assert measure_latency(model, torch.randn(1, 16), warmup=1, iters=3) > 0


def test_throughput_runs_until_the_minimum_time():
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    measure_throughput(Counting(), torch.randn(2, 3), warmup=0, iters=1, min_seconds=0.05)
    assert len(calls) > 1


def test_cpu_reports_no_peak_memory_and_names_itself():
    assert peak_memory_mb(nn.Linear(4, 4), torch.randn(1, 4)) is None
    assert device_name("cpu") == "cpu"


def test_dtype_names():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")


def test_flops_of_any_callable_include_the_backward_pass():
    model = nn.Linear(64, 32)
    inputs = torch.randn(8, 64)
    forward = count_gflops(lambda: model(inputs))
    training = count_gflops(lambda: model(inputs).sum().backward())
    assert forward == pytest.approx(2 * 8 * 64 * 32 / 1e9) and training == pytest.approx(2 * forward)


def test_training_step_updates_the_model_and_reports_speed():
    model = nn.Linear(16, 4)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = measure_training_step(model, torch.randn(8, 16), lambda out: out.square().mean(), optimizer,
                                   warmup=0, iters=2)
    assert result.images_per_s > 0 and result.latency_ms > 0 and result.peak_memory_mb is None
    assert not torch.equal(model.weight, before)


def test_matmul_ceiling_is_positive():
    assert matmul_peak_tflops("cpu", size=128, iters=2) > 0


def test_process_clock_counts_this_process_cpu_seconds_on_one_thread():
    threads = torch.get_num_threads()
    seen = []

    class _Spy(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x @ x

    result = measure_throughput(_Spy(), torch.randn(256, 256), warmup=1, iters=3, clock="process")
    assert result.images_per_s > 0 and set(seen) == {1} and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="unknown clock 'cpu'"):
        measure_throughput(nn.Identity(), torch.randn(2, 2), clock="cpu")
    with pytest.raises(ValueError, match="needs clock='wall'"):
        measure_throughput(nn.Identity(), torch.randn(2, 2, device="meta"), clock="process")
