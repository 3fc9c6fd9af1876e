"""``itpn reproduce TABLE --scale paper --plan`` and ``itpn run --plan``: GPU-hours per stage, per row and in
total, on a named card, from FLOPs x images at a stated MFU (or a gpu_suite's measured img/s); nothing runs."""
import dataclasses
import json
import re

import pytest
from typer.testing import CliRunner

from flows.reproduce import TABLES, plan
from flows.costs import stage_work
from itpn.bench.cards import get_card
from itpn.bench.cost import ASSUMED_MFU, TRAIN_IMAGES, stage_cost, suite_label
from itpn_cli.main import app

runner = CliRunner()


def test_every_table_plans_rows_and_a_total_and_writes_nothing(tmp_path, monkeypatch):
    # FLOPs are counted for real in the next test; here the plumbing of every table (seconds instead of minutes)
    monkeypatch.setattr("flows.costs.training_gflops", lambda *args, **kwargs: 100.0)
    monkeypatch.setattr("flows.costs.pretraining_gflops", lambda values: 50.0)
    for table in TABLES:
        out = tmp_path / table
        result = runner.invoke(app, ["reproduce", table, "--scale", "paper", "--plan", "--output-dir", str(out),
                                     "--suite", str(tmp_path / "none.json")])
        assert result.exit_code == 0, result.output
        assert "GPU-hours on one H200" in result.output
        for row in TABLES[table].rows:
            assert row.name in result.output
        total = re.search(r"total: ([\d,.]+) GPU-hours on one H200", result.output)
        assert total and float(total.group(1).replace(",", "")) > 0
        assert "35 % MFU (our assumption)" in result.output
        assert not out.exists()  # a plan writes no parameters files
    assert "V100-h" in result.output  # the paper's figures beside ours


def test_gpu_hours_are_flops_times_images_over_mfu_times_peak():
    jobs = plan("table8", "paper", write=False)
    job = next(job for job in jobs if job.stage == "finetune_classification")
    work = stage_work(job.stage, job.params)
    card = get_card("A100")
    config = job.params.classification_config(None)
    assert work.images == config.epochs * TRAIN_IMAGES["imagenet"]
    by_hand = work.gflops_per_image * 1e9 * work.images / (ASSUMED_MFU * 312e12) / 3600
    assert stage_cost(work, card).gpu_hours == pytest.approx(by_hand)
    # a suite measured on the card replaces the assumption with its img/s (the suite times Fast-iTPN and ViT, so
    # table 8's iTPN-B stage is given the key of the Fast-iTPN-B step here)
    section, label, size = suite_label("fine-tuning step", "fast_itpn_base_patch16_224", config.img_size)
    work = dataclasses.replace(work, suite_key=(section, label, size))
    suite = {"device": "NVIDIA A100-SXM4-80GB", "date": "2026-12-03", "rows": [
        dict(section=section, model=label, size=size, mode="train", images_per_s=1000.0)]}
    measured = stage_cost(work, card, suite)
    assert measured.gpu_hours == pytest.approx(work.images / 1000.0 / 3600)
    assert "measured by gpu_suite" in measured.rate_basis


def test_run_plan_prices_each_stage_and_refuses_a_suite_of_another_card(tmp_path):
    suite = tmp_path / "gpu_suite.json"
    suite.write_text(json.dumps({"device": "NVIDIA H200", "rows": []}))
    params = "configs/pipeline/fast-itpn-base_8gpu.yaml"
    result = runner.invoke(app, ["run", "--params", params, "--plan", "--card", "V100", "--suite", str(suite)])
    assert result.exit_code != 0 and "measured on 'NVIDIA H200', not on a V100" in result.output
    result = runner.invoke(app, ["run", "--params", params, "--plan", "--suite", str(suite)])
    assert result.exit_code == 0, result.output
    assert "pretrain" in result.output and "total:" in result.output
