"""Alembic migrations of the results store, run programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from services import settings
from services.store.engine import check_connection, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number: PostgreSQL upgrades of one database wait on it in turn.
_PG_UPGRADE_LOCK = 0x17B7_0001


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the store's migrations, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the store's database is at; None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Create or migrate the store at ``url`` (default: the configured store) to ``revision``.

    Runs in one transaction that takes the write lock first, so several processes may
    call it on the same store at once. Returns the revision the store is at afterwards.
    """
    target = url or settings.store_url()
    engine = make_engine(target)
    try:
        check_connection(engine, target)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
            command.upgrade(alembic_config(connection), revision)
        return current_revision(engine)
    finally:
        engine.dispose()
