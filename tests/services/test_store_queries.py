"""Reading the results store: speed-ups, accuracy vs speed-up, Pareto fronts, read-only access."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from itpn.models import effective_layout, stage3_depth
from itpn.records import MetricRecord, model_size
from services.store import (
    ResultsWriter,
    StoreError,
    StoreNotInitialisedError,
    StoreUnavailableError,
    model_family,
    open_reader,
    open_writer,
    pareto_front,
    upgrade,
)

BASE = "fast_itpn_base_patch16_224"
TINY = "fast_itpn_tiny_patch16_224"
T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def layout(model: str, variant: str, size: int = 224, window: int = 7):
    return effective_layout(variant, size, stage3_depth(model), window_size=window)


def bench(model: str, variant: str, images_per_s: float, device: str = "cpu", batch: int = 64, size: int = 224,
          window: int = 7) -> dict[str, object]:
    return {
        "model": model,
        "variant": variant,
        "resolution": size,
        "batch_size": batch,
        "images_per_s": images_per_s,
        "device": device,
        **layout(model, variant, size, window).to_dict(),
    }


def top1(model: str, variant: str, value: float, step: int = 0, size: int = 224, window: int = 7) -> MetricRecord:
    return MetricRecord("classification", "imagenet", "val", "top1", value, step=step, model=model, variant=variant,
                        layout=layout(model, variant, size, window))


def record(writer: ResultsWriter, experiment: str, run_key: str, minute: int, **rows: object) -> int:
    """The id of a completed run of ``experiment`` that started ``minute`` minutes after T0, holding ``rows``."""
    started = T0 + timedelta(minutes=minute)
    return writer.record_run(experiment, run_key, started_at=started, finished_at=started + timedelta(seconds=30),
                             **rows)["run_id"]


def test_speedup_uses_the_same_runs_baseline_then_the_newest(store_url: str) -> None:
    with open_writer(store_url) as writer:
        run_a = record(writer, "accel", "bench-a", 0, benchmarks=[
            bench(BASE, "baseline", 100.0), bench(BASE, "window", 190.0), bench(BASE, "baseline", 300.0, device="cuda")])
        run_b = record(writer, "accel", "bench-b", 1, benchmarks=[
            bench(BASE, "baseline", 50.0), bench(BASE, "migration_20", 60.0)])
        run_c = record(writer, "accel", "bench-c", 2, benchmarks=[
            bench(BASE, "migration_40", 127.0), bench(BASE, "window", 600.0, "cuda"), bench(TINY, "window", 900.0)])
    with open_reader(store_url) as reader:
        rows = reader.benchmarks()
    speed = {(r.run_id, r.variant, r.device, r.model): r.speedup for r in rows.itertuples()}
    assert speed[(run_a, "window", "cpu", BASE)] == pytest.approx(1.9)
    assert speed[(run_b, "migration_20", "cpu", BASE)] == pytest.approx(1.2)  # same run's baseline (50)
    assert speed[(run_c, "migration_40", "cpu", BASE)] == pytest.approx(127.0 / 50.0)  # newest baseline
    assert speed[(run_c, "window", "cuda", BASE)] == pytest.approx(2.0)  # baseline of the same device
    assert math.isnan(speed[(run_c, "window", "cpu", TINY)])  # no baseline for that model


def test_accuracy_vs_speedup_one_point_per_variant(store_url: str) -> None:
    with open_writer(store_url) as writer:
        record(
            writer,
            "accel",
            "eval",
            0,
            metrics=[
                top1(BASE, "baseline", 88.0),
                top1(BASE, "migration_10", 85.0, step=1),
                top1(BASE, "migration_10", 87.8, step=5),  # the newest step counts
                top1(BASE, "window", 86.0),
                top1(BASE, "migration_40", 87.0),  # no benchmark: NaN speed-up
                MetricRecord("classification", "imagenet", "val", "top5", 99.0, model=BASE, variant="window",
                             layout=layout(BASE, "window")),
                MetricRecord("detection", "coco", "val", "bbox_mAP", 53.4, model=BASE, variant="baseline",
                             layout=layout(BASE, "baseline")),
                MetricRecord("detection", "coco", "val", "bbox_mAP", 53.0, model=BASE, variant="window",
                             layout=layout(BASE, "window")),
                MetricRecord("classification", "imagenet", "train", "top1", 99.0, model=BASE, variant="window",
                             layout=layout(BASE, "window")),
            ],
            benchmarks=[bench(BASE, "baseline", 100.0), bench(BASE, "migration_10", 115.0),
                        bench(BASE, "window", 190.0)],
        )
        record(writer, "other", "eval-other", 1, metrics=[top1(TINY, "baseline", 80.0)])
    with open_reader(store_url) as reader:
        points = reader.accuracy_vs_speedup(experiment="accel", device="cpu")
        everything = reader.accuracy_vs_speedup()
    table = points.set_index(["task", "variant"])
    assert sorted(table.index) == [
        ("classification", "baseline"),
        ("classification", "migration_10"),
        ("classification", "migration_40"),
        ("classification", "window"),
        ("detection", "baseline"),
        ("detection", "window"),
    ]
    assert table.loc[("classification", "migration_10"), "accuracy"] == 87.8
    assert table.loc[("classification", "migration_10"), "speedup"] == pytest.approx(1.15)
    assert table.loc[("classification", "baseline"), "speedup"] == 1.0
    assert table.loc[("detection", "window"), "accuracy"] == 53.0
    assert table.loc[("detection", "window"), "metric"] == "bbox_mAP"
    assert math.isnan(table.loc[("classification", "migration_40"), "speedup"])
    assert set(points["size"]) == {"base"} and set(points["family"]) == {"fast_itpn"}
    assert TINY in set(everything["model"]) and TINY not in set(points["model"])


def test_accuracy_and_speed_of_different_configurations_make_no_point(store_url: str) -> None:
    """A point is one configuration: an accuracy pairs only with a benchmark of the same input size and
    layout; otherwise the point has no speed-up and says which half is missing."""
    with open_writer(store_url) as writer:
        record(writer, "pairs", "bench", 0, benchmarks=[
            bench(BASE, "baseline", 100.0), bench(BASE, "window", 150.0), bench(BASE, "migration_30", 120.0),
            bench(BASE, "baseline", 300.0, size=512), bench(BASE, "window", 400.0, size=512, window=16)])
        record(writer, "pairs", "eval", 1, metrics=[
            top1(BASE, "baseline", 80.0, size=128, window=4),  # timed at 224 and 512 only
            top1(BASE, "window", 79.0, size=128, window=4),
            top1(BASE, "migration_30", 78.0),  # the benchmark's size and layout: a point
            top1(BASE, "window", 77.0, size=512, window=8),  # the size was timed, with 16-token windows
            # a validation curve's row without a layout repeats the run's final value: no point of its own
            MetricRecord("classification", "imagenet", "val", "top1", 78.0, step=40, model=BASE, variant="migration_30"),
        ])
    with open_reader(store_url) as reader:
        points = reader.accuracy_vs_speedup(experiment="pairs").set_index(["variant", "input_h"])
    assert len(points) == 4 and points.loc[("migration_30", 224), "speedup"] == pytest.approx(1.2)
    assert points.loc[("migration_30", 224), "missing"] == ""
    assert points.loc[("migration_30", 224), "configuration"] == layout(BASE, "migration_30").describe()
    for variant, size in (("baseline", 128), ("window", 128), ("window", 512)):
        assert math.isnan(points.loc[(variant, size), "speedup"])
        assert points.loc[(variant, size), "missing"] == (f"no benchmark at {size}×{size} for {variant} with its "
                                                          f"layout")


def test_pareto_front_keeps_undominated_points() -> None:
    points = pd.DataFrame(
        {
            "variant": ["baseline", "migration_10", "migration_20", "window", "window_gathering"],
            "speedup": [1.0, 1.15, 1.1, 1.9, 1.85],
            "accuracy": [53.4, 53.4, 53.2, 52.8, 52.7],
        }
    )
    front = pareto_front(points)
    assert front["variant"].tolist() == ["migration_10", "window"]
    assert pareto_front(points.iloc[:0]).empty


def test_model_names_split_into_family_and_size() -> None:
    assert (model_family(BASE), model_size(BASE)) == ("fast_itpn", "base")
    assert (model_family("itpn_large_patch16_224"), model_size("itpn_large_patch16_224")) == ("itpn", "large")
    assert (model_family("hivit_small_patch16_224"), model_size("hivit_small_patch16_224")) == ("hivit", "small")
    assert (model_family("resnet50"), model_size("resnet50")) == ("resnet50", "")


def test_reader_is_read_only(store_url: str) -> None:
    with open_writer(store_url) as writer, writer.engine.begin() as connection:  # an experiment without runs
        connection.execute(text("INSERT INTO experiments (name, description, created_at) "
                                "VALUES ('accel', '', '2025-01-01')"))
    with open_reader(store_url) as reader:
        assert reader.is_empty()  # an experiment, no runs yet
        insert = text("INSERT INTO experiments (name, description, created_at) VALUES ('x', '', '2025-01-01')")
        with pytest.raises(DBAPIError, match=r"(?i)read-?only"), reader.engine.begin() as connection:
            connection.execute(insert)
        assert reader.experiments()["name"].tolist() == ["accel"]


def test_reader_explains_an_empty_or_missing_store(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/nothing-here.db"
    with pytest.raises(StoreNotInitialisedError, match="itpn demo"):
        open_reader(missing)
    assert not (tmp_path / "nothing-here.db").exists()  # reading never creates the store

    empty = f"sqlite:///{tmp_path}/empty.db"
    upgrade(empty)
    with open_reader(empty) as reader:
        assert reader.is_empty()
        assert reader.accuracy_vs_speedup().empty
        assert reader.benchmarks().empty


def test_unopenable_store_names_the_url_and_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}"  # a directory, not a database file
    with pytest.raises(StoreUnavailableError) as caught:
        open_reader(url)
    assert f"cannot open the results store at {url}" in str(caught.value)
    assert "ITPN_STORE_URL" in str(caught.value)


def test_unreachable_postgres_hides_the_password() -> None:
    pytest.importorskip("psycopg", reason="PostgreSQL driver not installed (pip install -e '.[postgres]')")
    url = "postgresql+psycopg://someone:secret@127.0.0.1:9/results"
    with pytest.raises(StoreUnavailableError) as caught:
        open_reader(url)
    message = str(caught.value)
    assert "postgresql+psycopg://someone:***@127.0.0.1:9/results" in message
    assert "secret" not in message
    assert "ITPN_STORE_URL" in message


def test_missing_postgres_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(StoreError, match=r"pip install -e '\.\[postgres\]'"):
        open_reader("postgresql://someone@127.0.0.1:9/results")


def test_unsupported_url_is_refused_with_the_supported_forms() -> None:
    with pytest.raises(StoreError, match="supported: sqlite:///<path> or postgresql"):
        open_reader("mysql://localhost/results")
