"""Fixtures for the results-store tests: a fresh store per test, SQLite and (when a server is
given by ITPN_TEST_POSTGRES_URL, e.g. from scripts/start_postgres.sh) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "ITPN_TEST_POSTGRES_URL"


def _postgres_param() -> object:
    reason = f"no PostgreSQL server: set {POSTGRES_ENV} (`bash scripts/start_postgres.sh` starts one and prints it)"
    return pytest.param("postgresql", marks=pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=reason))


@pytest.fixture(params=["sqlite", _postgres_param()])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/results.db"
        return
    server = make_url(os.environ[POSTGRES_ENV])
    name = f"itpn_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
