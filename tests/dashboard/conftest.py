"""A results store filled with test rows for the dashboard tests (test data, not results)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itpn.models import effective_layout, stage3_depth
from itpn.records import MetricRecord
from services.store import open_writer

BASE = "fast_itpn_base_patch16_224"
TINY = "fast_itpn_tiny_patch16_224"
# (variant, img/s factor over baseline, top-1 (%), box mAP (COCO's [0, 1]))
VARIANTS = [
    ("baseline", 1.00, 88.0, 0.534),
    ("migration_10", 1.15, 88.0, 0.534),
    ("migration_20", 1.20, 87.5, 0.5285),
    ("window", 1.90, 87.2, 0.528),
    ("window_gathering_hrpe", 1.70, 87.6, 0.529),
]
SIZE, WINDOW = 224, 7  # a 14×14 token grid in 2×2 windows: every variant acts
# Half pairs the page must report: an accuracy at a size nothing timed, a benchmark at a size nothing evaluated.
LONE_ACCURACY = ("detection", "window_gathering", 128)
LONE_BENCHMARK = ("window", 512)
T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def minute(n: int) -> dict[str, datetime]:
    """A run's times: started ``n`` minutes after T0 (later runs are newer), ran 30 s."""
    started = T0 + timedelta(minutes=n)
    return {"started_at": started, "finished_at": started + timedelta(seconds=30)}


def layout(model: str, variant: str, size: int = SIZE):
    return effective_layout(variant, size, stage3_depth(model), window_size=WINDOW if size == SIZE else size // 64)


def fill(url: str) -> None:
    metrics, benchmarks = [], []
    for model, base_speed, shift in ((BASE, 100.0, 0.0), (TINY, 400.0, -6.0)):
        for variant, factor, top1, box in VARIANTS:
            metrics += [
                MetricRecord("classification", "imagenet", "val", "top1", top1 + shift, 0, model, variant,
                             layout(model, variant)),
                MetricRecord("detection", "coco", "val", "bbox_mAP", box + shift / 100, 0, model, variant,
                             layout(model, variant)),
            ]
            for device, scale in (("cpu", 1.0), ("cuda", 20.0)):
                benchmarks.append(
                    {
                        "model": model,
                        "variant": variant,
                        "resolution": 224,
                        "batch_size": 32,
                        "images_per_s": base_speed * scale * factor,
                        "device": device,
                        "latency_ms": 1000.0 / (base_speed * scale * factor),
                        "memory_mb": 800.0 if device == "cuda" else None,  # not measured on CPU
                        "gflops": 17.0 / factor,
                        **layout(model, variant).to_dict(),
                    }
                )
    task, variant, size = LONE_ACCURACY
    metrics.append(MetricRecord(task, "coco", "val", "bbox_mAP", 0.5, 0, TINY, variant, layout(TINY, variant, size)))
    variant, size = LONE_BENCHMARK
    benchmarks.append({"model": BASE, "variant": variant, "resolution": size, "batch_size": 32, "images_per_s": 300.0,
                       "device": "cpu", **layout(BASE, variant, size).to_dict()})
    with open_writer(url) as writer:
        writer.record_run("acceleration", "eval-accel", flow_name="evaluate", git_commit="0a1b2c3", metrics=metrics,
                          benchmarks=benchmarks, **minute(0))
        writer.record_run("smoke", "broken-run", flow_name="finetune", status="failed",
                          error="Traceback (most recent call last):\nRuntimeError: CUDA out of memory", **minute(1))
        writer.record_run(
            "acceleration", "pretrain-base", flow_name="pretrain", **minute(2),
            metrics=[MetricRecord("pretrain", "imagenet", "train", "loss", 2.0 / (step + 1), step, BASE)
                     for step in range(20)]
            + [MetricRecord("pretrain", "imagenet", "train", "lr", 1e-4 * step, step, BASE) for step in range(20)],
        )
        writer.record_run("acceleration", "benchmark-base", flow_name="benchmark", **minute(3),  # newest, no curves
                          metrics=[MetricRecord("benchmark", "imagenet", "val", "images_per_s", 99.0, 0, BASE)])


@pytest.fixture(scope="session")
def filled_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard-store')}/results.db"
    fill(url)
    return url


@pytest.fixture(scope="session")
def app_path() -> Path:
    return Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture(autouse=True)
def restore_main_module():
    """Streamlit's AppTest leaves the app script as ``__main__``; processes spawned later in the session
    (DDP, store writers, pool workers) would re-run it on start and die. Put the real one back."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
