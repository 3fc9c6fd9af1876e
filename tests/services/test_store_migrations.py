"""Alembic migrations: the migrated schema is exactly the models' schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.store import current_revision, head_revision, open_reader, upgrade
from services.store.engine import make_engine
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


def test_upgrading_a_store_with_runs_keeps_each_run_as_its_first_attempt(store_url: str) -> None:
    upgrade(store_url, "0001_initial")
    engine = make_engine(store_url)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO experiments (id, name, description, created_at) "
                                    "VALUES (1, 'old', '', :t)"), {"t": started})
            connection.execute(text(
                "INSERT INTO runs (id, experiment_id, run_key, flow_name, params, hardware, status, error, attempts, "
                "started_at, finished_at, duration_s) VALUES (1, 1, 'old:pretrain', 'pretrain', '{}', '{}', "
                "'failed', 'boom', 1, :s, :f, 90.0)"), {"s": started, "f": started + timedelta(seconds=90)})
    finally:
        engine.dispose()
    assert upgrade(store_url) == head_revision()
    with open_reader(store_url) as reader:
        [attempt] = reader.attempts(1).to_dict("records")
    assert attempt["status"] == "failed" and attempt["error"] == "boom"
    assert attempt["started_at"] == started and attempt["duration_s"] == 90.0
