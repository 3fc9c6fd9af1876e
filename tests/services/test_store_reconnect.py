"""A lost database connection while recording: retried with backoff, named in the log, the run recorded
once; a connection lost for good is an error naming the store and what to do. The first test restarts a
real PostgreSQL while a stage runs; it needs a server started by ``scripts/start_postgres.sh`` (restarted
with the same script: ``ITPN_PG_DIR`` / the URL's port) and is skipped without ``ITPN_TEST_POSTGRES_URL``."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from itpn.records import MetricRecord
from services.store import open_writer
from services.store.models import Metric, Run

POSTGRES_ENV = "ITPN_TEST_POSTGRES_URL"  # as the other store tests (tests/services/conftest.py)
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "start_postgres.sh"
T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def server(action: str) -> None:
    """``scripts/start_postgres.sh`` (``start``, ``stop``) for the server of ``ITPN_TEST_POSTGRES_URL``."""
    port = str(make_url(os.environ[POSTGRES_ENV]).port or 5432)
    subprocess.run(["bash", str(SCRIPT), *([] if action == "start" else [action])], check=True, capture_output=True,
                   env={**os.environ, "ITPN_PG_PORT": port}, timeout=120)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new database on the server of ``ITPN_TEST_POSTGRES_URL`` (dropped afterwards); skipped without one, or
    when that server is not the one ``scripts/start_postgres.sh`` runs (the test must restart it)."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV} (`bash scripts/start_postgres.sh` starts one)")
    data = Path(os.environ.get("ITPN_PG_DIR", "/tmp/itpn-postgres")) / "data" / "postmaster.pid"
    if not data.exists():
        pytest.skip(f"{POSTGRES_ENV} is not a server scripts/start_postgres.sh runs in {data.parent} (set ITPN_PG_DIR)")
    address = make_url(os.environ[POSTGRES_ENV])
    name = f"itpn_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(address, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield address.set(database=name).render_as_string(hide_password=False)
    finally:
        server("start")  # whatever the test left, the next one finds it up
        admin.dispose()  # its pooled connection died with the restart
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


class Seen(logging.Handler):
    """Sets ``event`` when a record whose message holds ``words`` is logged."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words, self.event, self.messages = words, threading.Event(), []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.words in record.getMessage():
            self.event.set()


def test_a_database_restarted_while_a_stage_runs_still_records_its_result_once(postgres_url: str) -> None:
    """The writer is open (a pooled connection) when the server goes down while the stage runs; the stage
    ends and its result is recorded while the server is still down: the first try fails on the lost
    connection, the server comes back once that failure is logged, and a retry records the run. Recording
    it again (a rerun after a kill) leaves it once."""
    rows = [MetricRecord("classification", "imagenet", "val", "top1", 81.5, model="m", variant="baseline"),
            MetricRecord("classification", "imagenet", "val", "top5", 95.0, model="m", variant="baseline")]
    seen = Seen("lost the connection to the results store")
    logging.getLogger("services.store.writer").addHandler(seen)
    try:
        with open_writer(postgres_url) as writer:
            writer.record_run("exp", "exp:pretrain:k0", started_at=T0, finished_at=T0 + timedelta(seconds=5))
            server("stop")  # the stage runs: the database restarts under it
            back = threading.Thread(target=lambda: seen.event.wait(120) and server("start"))
            back.start()
            finished = T0 + timedelta(seconds=60)
            recorded = writer.record_run("exp", "exp:finetune:k1", started_at=T0, finished_at=finished, metrics=rows)
            back.join()
            again = writer.record_run("exp", "exp:finetune:k1", started_at=T0, finished_at=finished, metrics=rows)
            with writer._sessions() as session:
                runs = session.scalars(select(Run.run_key).order_by(Run.run_key)).all()
                statuses = set(session.scalars(select(Run.status)).all())
                metrics = session.execute(select(Metric.name, Metric.value).order_by(Metric.name)).all()
                attempts = session.scalar(select(Run.attempts).where(Run.run_key == "exp:finetune:k1"))
                total = session.scalar(select(func.count()).select_from(Metric))
    finally:
        logging.getLogger("services.store.writer").removeHandler(seen)
    assert seen.event.is_set(), "no retry was logged: the server's restart went unnoticed"
    assert "retry 1 of" in seen.messages[0] and "recording run 'exp:finetune:k1'" in seen.messages[0]
    assert recorded["status"] == again["status"] == "completed" and recorded["metrics"] == 2
    assert runs == ["exp:finetune:k1", "exp:pretrain:k0"] and statuses == {"completed"}
    assert [tuple(row) for row in metrics] == [("top1", 81.5), ("top5", 95.0)] and total == 2
    assert attempts == 1


def lost_once(calls: list[int], times: int):
    """A ``ResultsWriter._claim_run`` whose first ``times`` calls lose the connection (as SQLAlchemy reports a
    dropped PostgreSQL connection: ``connection_invalidated``) after the transaction began."""
    from services.store.writer import ResultsWriter

    claim = ResultsWriter._claim_run

    def claim_run(session, experiment, run_key, sweep):
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("INSERT INTO runs ...", {}, Exception("server closed the connection unexpectedly"),
                                   connection_invalidated=True)
        return claim(session, experiment, run_key, sweep)

    return staticmethod(claim_run)


def test_a_lost_connection_is_retried_logged_and_the_run_recorded_once(tmp_path, monkeypatch, caplog) -> None:
    from services.store import writer as writer_module

    monkeypatch.setattr(writer_module, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    calls: list[int] = []
    monkeypatch.setattr(writer_module.ResultsWriter, "_claim_run", lost_once(calls, 2))
    rows = [MetricRecord("classification", "imagenet", "val", "top1", 81.5, model="m", variant="baseline")]
    with caplog.at_level(logging.WARNING, logger="services.store.writer"):
        with open_writer(f"sqlite:///{tmp_path}/results.db") as writer:
            recorded = writer.record_run("exp", "exp:s:k", started_at=T0, finished_at=T0 + timedelta(seconds=1),
                                         metrics=rows)
            with writer._sessions() as session:
                assert session.scalar(select(func.count()).select_from(Run)) == 1
                assert session.execute(select(Metric.name, Metric.value)).all() == [("top1", 81.5)]
    assert len(calls) == 3 and recorded["status"] == "completed"
    retries = [record.getMessage() for record in caplog.records]
    assert len(retries) == 2 and "retry 1 of 3" in retries[0] and "retry 2 of 3" in retries[1]
    assert "lost the connection to the results store sqlite:///" in retries[0]
    assert "server closed the connection unexpectedly" in retries[0] and "recording run 'exp:s:k'" in retries[0]


def test_a_connection_lost_for_good_names_the_store_the_retries_and_what_to_do(tmp_path, monkeypatch) -> None:
    from services.store import StoreUnavailableError
    from services.store import writer as writer_module

    monkeypatch.setattr(writer_module, "RETRY_DELAYS_S", (0.01,))
    monkeypatch.setattr(writer_module.ResultsWriter, "_claim_run", lost_once([], 10))
    with open_writer(f"sqlite:///{tmp_path}/results.db") as writer:
        with pytest.raises(StoreUnavailableError, match=r"while recording run 'exp:s:k'.*after 1 retries.*run again"):
            writer.record_run("exp", "exp:s:k", started_at=T0, finished_at=T0 + timedelta(seconds=1))
        with writer._sessions() as session:
            assert session.scalar(select(func.count()).select_from(Run)) == 0  # nothing half-written
