"""Engines for the results store: SQLite (WAL, one writer at a time) or PostgreSQL.

SQLite writers open every transaction with ``BEGIN IMMEDIATE``: the write lock is taken
up front and waited for (busy timeout), instead of a deferred transaction failing with
"database is locked" when it tries to upgrade its read lock while another process writes.
Read-only engines open SQLite through a ``file:...?mode=ro`` URI and PostgreSQL sessions
with ``default_transaction_read_only``, so the dashboard cannot write by mistake.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

SQLITE_BUSY_TIMEOUT_S = 60.0
SUPPORTED = "sqlite:///<path> or postgresql+psycopg://user:password@host/dbname"


class StoreError(RuntimeError):
    """The results store cannot be used as asked."""


class StoreUnavailableError(StoreError):
    """The store's database cannot be opened or reached."""


class StoreNotInitialisedError(StoreError):
    """The store has no database or no schema yet: nothing was ever written to it."""


class StoreSchemaError(StoreError):
    """The store's schema is at another migration revision than the code."""


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def parse_url(url: str) -> URL:
    """Parse and check a store URL; a bare ``postgresql://`` gets the psycopg (v3) driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"results store URL {url!r} is not a database URL; use {SUPPORTED}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"results store URL {display_url(parsed)} uses {backend!r}; supported: {SUPPORTED}")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    if url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().resolve()


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; nothing is opened until the first connection."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, read_only=read_only)
    return _postgres_engine(parsed, read_only=read_only)


def check_connection(engine: Engine, url: str) -> None:
    """Open one connection, turning a failure into a message that names the URL and the fix."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())
        raise StoreUnavailableError(
            f"cannot open the results store at {display_url(url)}: {reason}\n"
            "Check ITPN_STORE_URL (or ITPN_STATE_DIR for the default SQLite file); "
            "create or migrate the store with `itpn store upgrade`."
        ) from exc


def _sqlite_engine(url: URL, *, read_only: bool) -> Engine:
    path = sqlite_path(url)
    if read_only:
        if path is None:
            raise StoreError("a read-only results store needs a SQLite file, not an in-memory database")
        uri = f"file:{quote(str(path))}?mode=ro"

        def connect_read_only() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

        engine = create_engine("sqlite://", creator=connect_read_only)
    else:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide when transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL; retried because the switch does not wait on the busy timeout.

    The mode is stored in the file, so only the first connection to a new database switches
    it; processes that open a new store at the same moment find it locked for a moment.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _postgres_engine(url: URL, *, read_only: bool) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if read_only:
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"results store URL {display_url(url)} needs the PostgreSQL driver psycopg: "
            "install it with `pip install -e '.[postgres]'`"
        ) from exc
