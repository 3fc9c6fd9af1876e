"""Alembic migrations: the migrated schema is exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.store import current_revision, head_revision, upgrade
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
        assert tables == {"alembic_version", "experiments", "runs", "metrics", "benchmarks", "artifacts"}
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
