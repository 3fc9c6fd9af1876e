"""Alembic migrations: the migrated schema is exactly the models' schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.store import current_revision, head_revision, open_reader, upgrade
from services.store.engine import make_engine
from services.store.migrate import alembic_config
from services.store.models import Base


def test_upgrade_creates_the_models_schema(store_url: str) -> None:
    assert upgrade(store_url) == head_revision()
    engine = make_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(engine).get_table_names())
        assert tables == {"alembic_version", "experiments", "runs", "run_attempts", "metrics", "benchmarks",
                          "artifacts"}
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(store_url: str) -> None:
    upgrade(store_url)
    assert upgrade(store_url) == head_revision()
    engine = make_engine(store_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_store_uses_wal(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def store_with_one_run(url: str, revision: str, *metric_tasks: str) -> None:
    """Bring the store at ``url`` to ``revision`` and write, in that revision's tables, experiment ``old`` (id 1)
    with one failed run (id 1) that started at STARTED and ran 90 s, and a metric row of each of ``metric_tasks``."""
    upgrade(url, revision)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO experiments (id, name, description, created_at) "
                                    "VALUES (1, 'old', '', :t)"), {"t": STARTED})
            connection.execute(text(
                "INSERT INTO runs (id, experiment_id, run_key, flow_name, params, hardware, status, error, attempts, "
                "started_at, finished_at, duration_s) VALUES (1, 1, 'old:pretrain', 'pretrain', '{}', '{}', "
                "'failed', 'boom', 1, :s, :f, 90.0)"), {"s": STARTED, "f": STARTED + timedelta(seconds=90)})
            for task in metric_tasks:
                connection.execute(text(
                    "INSERT INTO metrics (run_id, task, dataset, split, name, step, model, variant, value, "
                    "recorded_at) VALUES (1, :task, 'd', 'val', 'm', 0, 'm', 'baseline', 0.5, :t)"),
                    {"task": task, "t": STARTED})
    finally:
        engine.dispose()


def test_upgrading_a_store_with_runs_keeps_each_run_as_its_first_attempt(store_url: str) -> None:
    store_with_one_run(store_url, "0001_initial")
    assert upgrade(store_url) == head_revision()
    with open_reader(store_url) as reader:
        [attempt] = reader.attempts(1).to_dict("records")
    assert attempt["status"] == "failed" and attempt["error"] == "boom"
    assert attempt["started_at"] == STARTED and attempt["duration_s"] == 90.0


def test_upgrading_renames_the_rotated_detection_task_and_downgrading_names_it_back(store_url: str) -> None:
    store_with_one_run(store_url, "0002_run_attempts", "rotated_detection", "detection")
    assert upgrade(store_url) == head_revision()
    with open_reader(store_url) as reader:
        assert sorted(reader.metrics()["task"]) == ["detection", "rotated"]
    engine = make_engine(store_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002_run_attempts")
            assert sorted(connection.scalars(text("SELECT task FROM metrics"))) == ["detection", "rotated_detection"]
    finally:
        engine.dispose()


def test_upgrading_a_0003_store_gives_old_rows_no_layout_and_downgrading_drops_the_columns(store_url: str) -> None:
    store_with_one_run(store_url, "0003_rotated_task", "detection")
    engine = make_engine(store_url)
    with engine.begin() as connection:  # the one metric becomes detection's main metric, a point of the chart
        connection.execute(text("UPDATE metrics SET name = 'bbox_mAP', task = 'detection'"))
        connection.execute(text("UPDATE runs SET status = 'completed'"))
    engine.dispose()
    assert upgrade(store_url) == head_revision()
    with open_reader(store_url) as reader:
        [row] = reader.metrics().to_dict("records")
        [point] = reader.accuracy_vs_speedup(split="val").to_dict("records")
    assert row["input_h"] == row["input_w"] == 0 and row["grid_h"] is None and row["tokens_left"] is None
    assert "recorded without input size and layout" in point["missing"]  # an old row is never drawn as a point
    engine = make_engine(store_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0003_rotated_task")
            columns = {column["name"] for column in inspect(connection).get_columns("metrics")}
            assert "input_h" not in columns and "grid_h" not in columns
            assert connection.scalar(text("SELECT value FROM metrics")) == 0.5
    finally:
        engine.dispose()
