"""benchmarks/gpu_suite.py --device cpu --small: the GPU suite's code paths on tiny models, within its budget,
with every row either measured or saying why not, and the header a reader needs (card, torch, date, peak)."""
import json

import torch

def test_small_suite_measures_within_its_budget_and_states_skips(tmp_path, load_benchmark):
    suite = load_benchmark("gpu_suite")
    assert suite.main(["--device", "cpu", "--small", "--budget", "15", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert result["torch"] == torch.__version__ and result["device"] == "cpu" and result["date"]
    assert "matmul measured at the start" in result["peak_source"]
    rows = result["rows"]
    assert {row["section"] for row in rows} == {"inference", "variants", "fine-tuning step", "pre-training step"}
    for row in rows:
        assert row["status"] == "measured" or row["status"].startswith("skipped: needs about"), row
    eager = [row for row in rows if row["section"] == "inference" and row["mode"] == "eager"]
    assert eager and all(row["status"] == "measured" for row in eager[:6])  # the first group always fits
    for row in eager[:6]:
        assert row["images_per_s"] > 0 and row["gflops_per_image"] > 0
        assert row["mfu"] == row["gflops_per_image"] * row["images_per_s"] / 1e3 / result["peak_tflops"]
    table = (tmp_path / "gpu_suite.md").read_text()
    assert f"torch {torch.__version__}" in table and "| Fast-iTPN-B |" in table and "## Targets" in table


def test_budget_skips_what_would_overrun():
    from itpn.bench.budget import Budget, Estimator

    now = [0.0]
    budget = Budget(100, reserve=10, clock=lambda: now[0])
    estimate = Estimator(tflops=1.0, compile_base_s=10, compile_per_block_s=1)
    assert estimate.run_seconds(50_000) == 50.0  # 50 TFLOP at 1 TFLOP/s
    estimate.observe_run(10_000, 20.0)  # measured: 0.5 TFLOP/s, slower than assumed
    assert estimate.run_seconds(50_000) == 100.0
    estimate.observe_compile(10, 40.0)  # 2x the 20 s estimated
    assert estimate.compile_seconds(10) == 40.0
    now[0] = 50.0
    assert budget.fits(40.0) and not budget.fits(41.0)
    assert budget.skip_reason(41.0) == "skipped: needs about 41 s, 40 s of the 100 s budget left"
