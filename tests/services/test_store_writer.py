"""Writing to the results store: runs, metrics, benchmarks, artifacts, idempotency, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from itpn.records import BenchmarkRecord, MetricRecord, read_metrics_jsonl
from services import artifacts
from services.store import ResultsWriter, StoreError, open_reader, open_writer
from services.store import writer as writer_module
from services.store.models import Base, Benchmark, Metric, Run

MODEL = "fast_itpn_base_patch16_224"
T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def bench(variant: str, images_per_s: float, **extra: object) -> dict[str, object]:
    row = {
        "model": MODEL,
        "variant": variant,
        "resolution": 224,
        "batch_size": 64,
        "images_per_s": images_per_s,
        "device": "cpu",
    }
    row.update(extra)
    return row


def top1(variant: str, value: float) -> MetricRecord:
    return MetricRecord("classification", "imagenet", "val", "top1", value, model=MODEL, variant=variant)


def count(writer: ResultsWriter, model: type[Base]) -> int:
    with writer.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


def attempt(writer: ResultsWriter, run_key: str, minute: int, **rows: object) -> dict[str, object]:
    """Record an attempt of ``run_key`` in experiment ``accel`` that started ``minute`` minutes after T0 and ran 30 s."""
    started = T0 + timedelta(minutes=minute)
    return writer.record_run("accel", run_key, started_at=started, finished_at=started + timedelta(seconds=30), **rows)


def stored_metrics(store_url: str) -> set[tuple[str, float]]:
    with open_reader(store_url) as reader:
        frame = reader.metrics()
    return set(zip(frame["variant"], frame["value"]))


def test_a_recorded_run_keeps_params_hardware_and_timings(store_url: str) -> None:
    with open_writer(store_url) as writer:
        recorded = writer.record_run(
            "accel",
            "bench-1",
            started_at=T0,
            finished_at=T0 + timedelta(seconds=3),
            flow_name="benchmark",
            flow_run_id="0f1e",
            git_commit="abc123",
            params={"batch": 64, "path": Path("/x")},
            hardware={"cpu": "x86", "cores": 2},
        )
    with open_reader(store_url) as reader:
        runs = reader.runs()
        experiments = reader.experiments()
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_id"] == recorded["run_id"]
    assert run["status"] == "completed"
    assert run["experiment"] == "accel"
    assert run["flow_run_id"] == "0f1e" and run["git_commit"] == "abc123"
    assert run["params"] == {"batch": 64, "path": "/x"}
    assert run["hardware"] == {"cpu": "x86", "cores": 2}
    assert run["error"] is None
    assert run["finished_at"] >= run["started_at"]
    assert run["duration_s"] >= 0
    assert experiments["name"].tolist() == ["accel"] and experiments.loc[0, "runs"] == 1


def test_rerunning_a_finished_run_adds_no_duplicates(store_url: str) -> None:
    metrics = [
        MetricRecord("classification", "imagenet", "val", "top1", 88.1, step=0, model=MODEL, variant="baseline"),
        MetricRecord("classification", "imagenet", "val", "top1", 87.9, step=0, model=MODEL, variant="migration_10"),
    ]
    benchmarks = [bench("baseline", 100.0), bench("migration_10", 115.0)]
    with open_writer(store_url) as writer:
        run_ids = [attempt(writer, "eval-1", minute, metrics=metrics, benchmarks=benchmarks)["run_id"]
                   for minute in range(2)]
        assert run_ids[0] == run_ids[1]
        assert count(writer, Run) == 1
        assert count(writer, Metric) == 2
        assert count(writer, Benchmark) == 2
    with open_reader(store_url) as reader:
        run = reader.runs().iloc[0]
        assert reader.experiments()["name"].tolist() == ["accel"]
    assert run["attempts"] == 2 and run["status"] == "completed"


def test_rewriting_a_row_replaces_its_value(store_url: str) -> None:
    with open_writer(store_url) as writer:
        attempt(writer, "r", 0, metrics=[MetricRecord("pretrain", "imagenet", "train", "loss", 2.0, step=10)],
                benchmarks=[bench("baseline", 100.0, latency_ms=5.0)])
        written = attempt(writer, "r", 1, metrics=[
            MetricRecord("pretrain", "imagenet", "train", "loss", 1.5, step=10),
            MetricRecord("pretrain", "imagenet", "train", "loss", 1.0, step=10),
        ], benchmarks=[bench("baseline", 100.0, latency_ms=5.0),
                       BenchmarkRecord(MODEL, "baseline", 224, 64, 120.0, "cpu", latency_ms=4.0)])
    assert written["metrics"] == 1
    with open_reader(store_url) as reader:
        assert reader.metrics(name="loss")["value"].tolist() == [1.0]
        rows = reader.benchmarks()
    assert rows[["images_per_s", "latency_ms"]].values.tolist() == [[120.0, 4.0]]


def test_failed_run_keeps_store_consistent_and_records_error(store_url: str) -> None:
    good = top1("baseline", 80.0)
    not_finite = {"task": "classification", "dataset": "imagenet", "split": "val", "name": "top1",
                  "value": float("nan"), "step": 1}
    with open_writer(store_url) as writer:
        attempt(writer, "broken", 0, metrics=[good])
        with pytest.raises(ValueError, match="finite") as refused:
            attempt(writer, "broken", 1, metrics=[
                MetricRecord("classification", "imagenet", "val", "top5", 95.0, model=MODEL, variant="baseline"),
                not_finite,
            ])
        assert count(writer, Metric) == 1  # the whole second batch was refused
        attempt(writer, "broken", 1, status="failed", error=refused.value)
    with open_reader(store_url) as reader:
        run = reader.runs().iloc[0]
        metrics = reader.metrics()
        points = reader.accuracy_vs_speedup()
    assert run["status"] == "failed"
    assert "ValueError" in run["error"] and "finite" in run["error"]
    assert run["finished_at"] is not None
    assert metrics["name"].tolist() == ["top1"]
    assert points.empty  # results of failed runs stay out of the comparison


def test_invalid_rows_are_refused_whole(store_url: str) -> None:
    with open_writer(store_url) as writer:
        with pytest.raises(ValueError, match="unknown keys \\['fps'\\]"):
            attempt(writer, "r", 0, benchmarks=[bench("baseline", 100.0), {"fps": 3}])
        with pytest.raises(ValueError, match="images_per_s must be positive"):
            attempt(writer, "r", 0, benchmarks=[bench("baseline", 0.0)])
        assert count(writer, Metric) == 0
        assert count(writer, Benchmark) == 0


def test_error_inside_the_write_rolls_the_batch_back(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_upsert = writer_module._upsert

    def upsert_then_fail(session: object, model: type[Base], *args: object) -> int:
        written = real_upsert(session, model, *args)
        if model is Metric:
            raise RuntimeError("connection dropped")
        return written

    with open_writer(store_url) as writer:
        monkeypatch.setattr(writer_module, "_upsert", upsert_then_fail)
        rows = [MetricRecord("pretrain", "in1k", "train", "loss", float(step), step=step) for step in range(5)]
        with pytest.raises(RuntimeError, match="connection dropped"):
            attempt(writer, "r", 0, metrics=rows)
        assert count(writer, Metric) == 0


def test_run_key_cannot_move_to_another_experiment(store_url: str) -> None:
    with open_writer(store_url) as writer:
        writer.record_run("first", "shared-key", started_at=T0, finished_at=T0)
        with pytest.raises(StoreError, match="another experiment"):
            writer.record_run("second", "shared-key", started_at=T0, finished_at=T0)


def test_a_metrics_log_and_a_benchmark_json_file_are_stored(store_url: str, tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text(
        "\n".join(
            json.dumps(record)
            for record in [
                {"step": 0, "loss": 2.5, "lr": 1e-4, "time": "2025-01-01T00:00:00"},
                {"step": 10, "loss": 2.0, "lr": 2e-4},
                {"step": 20, "loss": 1.2, "lr": 2e-4, "grad_norm": 3},
            ]
        )
        + "\n\n"
    )
    table = tmp_path / "bench.json"
    table.write_text(json.dumps([bench("baseline", 50.0, gflops=17.5), bench("window", 80.0, memory_mb=900.0)]))
    with open_writer(store_url) as writer:
        for _again in range(2):
            recorded = writer.record_run(
                "pretrain", "p1", started_at=T0, finished_at=T0 + timedelta(minutes=1),
                metrics=read_metrics_jsonl(log, task="pretrain", dataset="in1k", model=MODEL),
                benchmarks=json.loads(table.read_text()))
            assert (recorded["metrics"], recorded["benchmarks"]) == (7, 2)
    with open_reader(store_url) as reader:
        curves = reader.training_curves(recorded["run_id"])
        speed = reader.benchmarks()
    loss = curves[curves["name"] == "loss"]
    assert loss["step"].tolist() == [0, 10, 20] and loss["value"].tolist() == [2.5, 2.0, 1.2]
    assert set(curves["name"]) == {"loss", "lr", "grad_norm"}
    assert set(curves["split"]) == {"train"} and set(curves["model"]) == {MODEL}
    assert speed.set_index("variant")["speedup"].to_dict() == {"baseline": 1.0, "window": 1.6}


def test_artifacts_are_hashed_and_recorded_once(store_url: str, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    stored = artifacts.put(source, artifacts.artifact_url("runs/r/weights.bin", root=str(tmp_path / "store")))
    with open_writer(store_url) as writer:
        first = attempt(writer, "r", 0, artifacts={"weights": stored.url})
        attempt(writer, "r", 0, artifacts={"weights": stored.url})
        with pytest.raises(FileNotFoundError, match="no file there"):
            attempt(writer, "r", 1, artifacts={"missing": str(tmp_path / "missing.bin")})
    with open_reader(store_url) as reader:
        rows = reader.artifacts(first["run_id"])
    assert len(rows) == 1
    assert rows.loc[0, "name"] == "weights"
    assert rows.loc[0, "sha256"] == stored.sha256 == artifacts.sha256(stored.url)


def test_forced_rerun_writing_fewer_metrics_leaves_exactly_its_rows(store_url: str) -> None:
    with open_writer(store_url) as writer:
        first = writer.record_run("accel", "e:finetune:k", started_at=T0, finished_at=T0 + timedelta(seconds=90),
                                  metrics=[top1("baseline", 80.0), top1("migration_10", 79.0)],
                                  benchmarks=[bench("baseline", 100.0), bench("migration_10", 115.0)])
        again = writer.record_run("accel", "e:finetune:k", started_at=T0 + timedelta(hours=1),
                                  finished_at=T0 + timedelta(hours=1, seconds=30), metrics=[top1("baseline", 81.0)],
                                  benchmarks=[bench("baseline", 101.0)])
        assert again["run_id"] == first["run_id"] and again["newest"]
        assert count(writer, Run) == 1 and count(writer, Benchmark) == 1
    with open_reader(store_url) as reader:
        history = reader.attempts(again["run_id"])
    assert stored_metrics(store_url) == {("baseline", 81.0)}
    assert history["started_at"].tolist() == [T0, T0 + timedelta(hours=1)]


def test_runs_hold_the_stage_times_not_the_moment_of_recording(store_url: str) -> None:
    with open_writer(store_url) as writer:
        writer.record_run("accel", "e:pretrain:k", started_at=T0, finished_at=T0 + timedelta(seconds=90.5),
                          metrics=[top1("baseline", 1.0)])
    with open_reader(store_url) as reader:
        run = reader.runs().iloc[0]
    assert run["started_at"] == T0 and run["finished_at"] == T0 + timedelta(seconds=90.5)
    assert run["duration_s"] == 90.5


def test_a_failed_attempt_that_later_succeeds_is_one_completed_run_with_history(store_url: str) -> None:
    with open_writer(store_url) as writer:
        failed = writer.record_run("accel", "e:pretrain:k", started_at=T0, finished_at=T0 + timedelta(seconds=5),
                                   status="failed", error="RuntimeError: out of memory")
        assert failed["status"] == "failed"
        done = writer.record_run("accel", "e:pretrain:k", started_at=T0 + timedelta(minutes=1),
                                 finished_at=T0 + timedelta(minutes=2), metrics=[top1("baseline", 70.0)])
    with open_reader(store_url) as reader:
        runs = reader.runs()
        history = reader.attempts(done["run_id"])
    assert len(runs) == 1 and runs.iloc[0]["status"] == "completed" and runs.iloc[0]["error"] is None
    assert runs.iloc[0]["attempts"] == 2 and runs.iloc[0]["duration_s"] == 60.0
    assert history["status"].tolist() == ["failed", "completed"]
    assert history["error"].iloc[0] == "RuntimeError: out of memory" and pd.isna(history["error"].iloc[1])


def test_recording_an_attempt_again_or_late_changes_no_newer_result(store_url: str) -> None:
    newer = T0 + timedelta(hours=1)
    with open_writer(store_url) as writer:
        writer.record_run("accel", "r", started_at=newer, finished_at=newer + timedelta(seconds=9),
                          metrics=[top1("baseline", 81.0)])
        late = writer.record_run("accel", "r", started_at=T0, finished_at=T0 + timedelta(seconds=9),
                                 metrics=[top1("baseline", 80.0), top1("window", 75.0)])
        same = writer.record_run("accel", "r", started_at=newer, finished_at=newer + timedelta(seconds=9),
                                 metrics=[top1("baseline", 81.0)])
        assert not late["newest"] and same["newest"]
    assert stored_metrics(store_url) == {("baseline", 81.0)}
    with open_reader(store_url) as reader:
        assert len(reader.attempts(same["run_id"])) == 2  # the same attempt recorded twice is one attempt
        assert reader.runs().iloc[0]["started_at"] == newer
