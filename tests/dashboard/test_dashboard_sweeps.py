"""The dashboard's sweep comparison: the store's view of a sweep (each point's trained variant, its
speed-up from the sweep's shared benchmark), the summary over seeds, and the section under AppTest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.sweeps import sweep_summary
from itpn.records import MetricRecord
from services.store import open_reader, open_writer

from test_dashboard_app import chart_titles, started

TINY = "fast_itpn_tiny_patch16_224"
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
TOP1 = {("baseline", 0): 80.0, ("baseline", 1): 82.0, ("window", 0): 78.0, ("window", 1): 79.0}


def point_params(variant: str, seed: int) -> dict:
    return {"experiment": {"sweep_point": {"model": TINY, "variant": variant, "seed": seed, "recipe": "default"}}}


@pytest.fixture
def sweep_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/results.db"
    with open_writer(url) as writer:
        writer.record_run("s", "s:benchmark_acceleration:k", sweep="s", started_at=T0, finished_at=T0, benchmarks=[
            {"model": TINY, "variant": variant, "resolution": 64, "batch_size": 4, "images_per_s": speed,
             "device": "cpu"} for variant, speed in (("baseline", 100.0), ("window", 150.0))])
        for (variant, seed), top1 in TOP1.items():
            name = f"s/tiny-{variant}-s{seed}"
            writer.record_run(name, f"{name}:finetune_classification:k", sweep="s", flow_name="finetune_classification",
                              started_at=T0, finished_at=T0 + timedelta(seconds=60), params=point_params(variant, seed),
                              metrics=[MetricRecord("classification", "imagenet", "val", "top1", top1, 6, TINY, variant),
                                       # the same weights under another variant: not this point's accuracy
                                       MetricRecord("classification", "imagenet", "val", "top1", 1.0, 6, TINY,
                                                    "migration_30")])
        writer.record_run("other", "other:finetune_classification:k", started_at=T0, finished_at=T0,
                          flow_name="finetune_classification", params=point_params("baseline", 0),
                          metrics=[MetricRecord("classification", "imagenet", "val", "top1", 5.0, 6, TINY,
                                                "baseline")])
    return url


def test_a_sweeps_points_carry_their_trained_variants_accuracy_and_speedup(sweep_store):
    with open_reader(sweep_store) as reader:
        assert reader.sweeps() == ["s"]
        points = reader.sweep_comparison("s")
    assert len(points) == 4  # not the experiment outside the sweep
    got = {(row.variant, row.seed): row.accuracy for row in points.itertuples()}
    assert got == TOP1
    assert set(points.loc[points["variant"] == "window", "speedup"]) == {1.5}
    assert set(points.loc[points["variant"] == "baseline", "speedup"]) == {1.0}
    assert set(points["duration_s"]) == {60.0}

    summary = sweep_summary(points).set_index("variant")
    assert summary.loc["baseline", "accuracy"] == 81.0 and summary.loc["baseline", "spread"] == 1.0
    assert summary.loc["window", "accuracy"] == 78.5 and summary.loc["window", "seeds"] == 2


def test_the_dashboard_compares_the_sweep(app_path: Path, sweep_store, monkeypatch: pytest.MonkeyPatch) -> None:
    at = started(app_path, sweep_store, monkeypatch)
    assert "Sweeps" in [header.value for header in at.header]
    assert "sweep: classification top1 vs speed-up" in chart_titles(at)
