"""Writing to the results store: runs, metrics, benchmarks, artifacts, idempotency, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services import artifacts
from services.store import BenchmarkRow, MetricRow, ResultsWriter, StoreError, open_reader, open_writer
from services.store import writer as writer_module
from services.store.models import Base, Benchmark, Metric, Run

MODEL = "fast_itpn_base_patch16_224"


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


def count(writer: ResultsWriter, model: type[Base]) -> int:
    with writer.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


def test_run_lifecycle_records_params_hardware_and_timings(store_url: str) -> None:
    with open_writer(store_url) as writer, writer.run(
        "accel",
        "bench-1",
        flow_name="benchmark",
        flow_run_id="0f1e",
        git_commit="abc123",
        params={"batch": 64, "path": Path("/x")},
        hardware={"cpu": "x86", "cores": 2},
    ) as run_id, open_reader(store_url) as reader:
        assert reader.runs().loc[0, "status"] == "running"
    with open_reader(store_url) as reader:
        runs = reader.runs()
        experiments = reader.experiments()
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_id"] == run_id
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
        MetricRow("classification", "imagenet", "val", "top1", 88.1, step=0, model=MODEL, variant="baseline"),
        MetricRow("classification", "imagenet", "val", "top1", 87.9, step=0, model=MODEL, variant="migration_10"),
    ]
    benchmarks = [bench("baseline", 100.0), bench("migration_10", 115.0)]
    with open_writer(store_url) as writer:
        run_ids = []
        for _attempt in range(2):
            with writer.run("accel", "eval-1", flow_name="evaluate") as run_id:
                run_ids.append(run_id)
                writer.add_metrics(run_id, metrics)
                writer.add_benchmarks(run_id, benchmarks)
        assert run_ids[0] == run_ids[1]
        assert writer.record_experiment("accel") == writer.record_experiment("accel")
        assert count(writer, Run) == 1
        assert count(writer, Metric) == 2
        assert count(writer, Benchmark) == 2
    with open_reader(store_url) as reader:
        run = reader.runs().iloc[0]
    assert run["attempts"] == 2 and run["status"] == "completed"


def test_rewriting_a_row_replaces_its_value(store_url: str) -> None:
    with open_writer(store_url) as writer:
        run_id = writer.start_run("accel", "r")
        writer.add_metrics(run_id, [MetricRow("pretrain", "imagenet", "train", "loss", 2.0, step=10)])
        written = writer.add_metrics(
            run_id,
            [
                MetricRow("pretrain", "imagenet", "train", "loss", 1.5, step=10),
                MetricRow("pretrain", "imagenet", "train", "loss", 1.0, step=10),
            ],
        )
        writer.add_benchmarks(run_id, [bench("baseline", 100.0, latency_ms=5.0)])
        writer.add_benchmarks(run_id, [BenchmarkRow(MODEL, "baseline", 224, 64, 120.0, "cpu", latency_ms=4.0)])
        writer.finish_run(run_id)
    assert written == 1
    with open_reader(store_url) as reader:
        assert reader.metrics(name="loss")["value"].tolist() == [1.0]
        rows = reader.benchmarks()
    assert rows[["images_per_s", "latency_ms"]].values.tolist() == [[120.0, 4.0]]


def test_failed_run_keeps_store_consistent_and_records_error(store_url: str) -> None:
    good = MetricRow("classification", "imagenet", "val", "top1", 80.0, model=MODEL, variant="baseline")
    with open_writer(store_url) as writer:
        with pytest.raises(ValueError, match="finite"), writer.run("accel", "broken") as run_id:
            writer.add_metrics(run_id, [good])
            writer.add_metrics(
                run_id,
                [
                    MetricRow("classification", "imagenet", "val", "top5", 95.0, model=MODEL, variant="baseline"),
                    MetricRow("classification", "imagenet", "val", "top1", float("nan"), step=1),
                ],
            )
        assert count(writer, Metric) == 1  # the whole second batch was refused
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
        run_id = writer.start_run("accel", "r")
        with pytest.raises(StoreError, match="no run with id 999"):
            writer.add_metrics(999, [MetricRow("pretrain", "in1k", "train", "loss", 1.0)])
        with pytest.raises(ValueError, match="unknown keys \\['fps'\\]"):
            writer.add_benchmarks(run_id, [bench("baseline", 100.0), {"fps": 3}])
        with pytest.raises(ValueError, match="images_per_s must be positive"):
            writer.add_benchmarks(run_id, [bench("baseline", 0.0)])
        assert count(writer, Metric) == 0
        assert count(writer, Benchmark) == 0


def test_error_inside_the_write_rolls_the_batch_back(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_upsert = writer_module._upsert

    def upsert_then_fail(*args: object, **kwargs: object) -> int:
        real_upsert(*args, **kwargs)
        raise RuntimeError("connection dropped")

    with open_writer(store_url) as writer:
        run_id = writer.start_run("accel", "r")
        monkeypatch.setattr(writer_module, "_upsert", upsert_then_fail)
        rows = [MetricRow("pretrain", "in1k", "train", "loss", float(step), step=step) for step in range(5)]
        with pytest.raises(RuntimeError, match="connection dropped"):
            writer.add_metrics(run_id, rows)
        assert count(writer, Metric) == 0


def test_run_key_cannot_move_to_another_experiment(store_url: str) -> None:
    with open_writer(store_url) as writer:
        writer.start_run("first", "shared-key")
        with pytest.raises(StoreError, match="another experiment"):
            writer.start_run("second", "shared-key")


def test_ingest_metrics_jsonl_and_benchmark_json(store_url: str, tmp_path: Path) -> None:
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
        run_id = writer.start_run("pretrain", "p1")
        for _again in range(2):
            assert writer.ingest_metrics_jsonl(run_id, log, task="pretrain", dataset="in1k", model=MODEL) == 7
            assert writer.ingest_benchmark_json(run_id, table) == 2
        writer.finish_run(run_id)
    with open_reader(store_url) as reader:
        curves = reader.training_curves(run_id)
        speed = reader.benchmarks()
    loss = curves[curves["name"] == "loss"]
    assert loss["step"].tolist() == [0, 10, 20] and loss["value"].tolist() == [2.5, 2.0, 1.2]
    assert set(curves["name"]) == {"loss", "lr", "grad_norm"}
    assert set(curves["split"]) == {"train"} and set(curves["model"]) == {MODEL}
    assert speed.set_index("variant")["speedup"].to_dict() == {"baseline": 1.0, "window": 1.6}


def test_ingest_rejects_malformed_files(store_url: str, tmp_path: Path) -> None:
    no_step = tmp_path / "no_step.jsonl"
    no_step.write_text('{"step": 0, "loss": 1.0}\n{"loss": 0.5}\n')
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    not_list = tmp_path / "dict.json"
    not_list.write_text('{"rows": []}')
    with open_writer(store_url) as writer:
        run_id = writer.start_run("e", "r")
        with pytest.raises(ValueError, match=r"no_step\.jsonl:2 must be a JSON object with a 'step' key"):
            writer.ingest_metrics_jsonl(run_id, no_step, task="pretrain", dataset="in1k")
        with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
            writer.ingest_benchmark_json(run_id, broken)
        with pytest.raises(ValueError, match="must hold a JSON list"):
            writer.ingest_benchmark_json(run_id, not_list)
        assert count(writer, Metric) == 0


def test_register_artifact_hashes_and_is_idempotent(store_url: str, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    stored = artifacts.put(source, artifacts.artifact_url("runs/r/weights.bin", root=str(tmp_path / "store")))
    with open_writer(store_url) as writer:
        run_id = writer.start_run("e", "r")
        first = writer.register_artifact(run_id, stored.url, name="weights")
        again = writer.register_artifact(run_id, stored.url, sha256=stored.sha256, size_bytes=stored.size_bytes)
        with pytest.raises(FileNotFoundError, match="no file there"):
            writer.register_artifact(run_id, str(tmp_path / "missing.bin"))
    assert first == again
    with open_reader(store_url) as reader:
        rows = reader.artifacts(run_id)
    assert len(rows) == 1
    assert rows.loc[0, "sha256"] == stored.sha256 == artifacts.sha256(stored.url)
    assert rows.loc[0, "size_bytes"] == 2000


T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def top1(variant: str, value: float) -> MetricRow:
    return MetricRow("classification", "imagenet", "val", "top1", value, model=MODEL, variant=variant)


def stored_metrics(store_url: str) -> set[tuple[str, float]]:
    with open_reader(store_url) as reader:
        frame = reader.metrics()
    return set(zip(frame["variant"], frame["value"]))


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
        history = writer.attempts(again["run_id"])
    assert stored_metrics(store_url) == {("baseline", 81.0)}
    assert [a["started_at"] for a in history] == [T0, T0 + timedelta(hours=1)]


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
        history = writer.attempts(done["run_id"])
    with open_reader(store_url) as reader:
        runs = reader.runs()
    assert len(runs) == 1 and runs.iloc[0]["status"] == "completed" and runs.iloc[0]["error"] is None
    assert runs.iloc[0]["attempts"] == 2 and runs.iloc[0]["duration_s"] == 60.0
    assert [(a["status"], a["error"]) for a in history] == [("failed", "RuntimeError: out of memory"),
                                                             ("completed", None)]


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
        assert len(writer.attempts(same["run_id"])) == 2  # the same attempt recorded twice is one attempt
    assert stored_metrics(store_url) == {("baseline", 81.0)}
    with open_reader(store_url) as reader:
        assert reader.runs().iloc[0]["started_at"] == newer


def test_starting_a_run_again_clears_the_rows_of_the_earlier_attempt(store_url: str) -> None:
    with open_writer(store_url) as writer:
        with writer.run("accel", "r") as run_id:
            writer.add_metrics(run_id, [top1("baseline", 80.0), top1("window", 75.0)])
        with writer.run("accel", "r") as run_id:
            writer.add_metrics(run_id, [top1("baseline", 82.0)])
    assert stored_metrics(store_url) == {("baseline", 82.0)}
