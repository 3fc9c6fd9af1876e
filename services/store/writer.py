"""Writing results: one finished attempt of a run, with all its rows, in one transaction.

A run is the work its key names; each execution of it is an attempt (``run_attempts``), kept as
history. The run's status, times and rows are those of its newest attempt. ``record_run`` writes an
attempt with its metric, benchmark and artifact rows in one transaction that holds the run's row lock,
so a flow that records again (after a crash, a retry or on purpose) rewrites its rows instead of adding
copies, a batch with one invalid row writes nothing, and two processes recording the same run at once
leave one run with the rows of the newer attempt, no copy and no stale row. The rows are
``itpn.records.MetricRecord`` and ``BenchmarkRecord`` (or mappings with their keys).

A PostgreSQL connection lost while recording (the server restarted, a network cut) is retried with
backoff (``RETRY_DELAYS_S``), each retry named in the log: the transaction is rolled back with the
connection, and recording an attempt again is what it did (idempotent), so a retry leaves the run
once. A pooled connection the server dropped between two recordings is replaced before use
(``pool_pre_ping``, ``services.store.engine``).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from itpn.records import BenchmarkRecord, MetricRecord, as_record
from services import artifacts as artifact_storage
from services import settings
from services.store.engine import (StoreError, StoreUnavailableError, check_connection, display_url, make_engine,
                                   parse_url)
from services.store.migrate import upgrade
from services.store.models import Artifact, Benchmark, Experiment, Metric, Run, RunAttempt, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

# Waits before each retry of a recording whose connection was lost: 31 s in all, in which a restarted
# PostgreSQL is back (ours: `pg_ctl restart` takes 1-3 s; a failover longer than this fails the recording,
# which the flows' task retries, and `itpn run` records again).
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
_METRIC_KEY = ("run_id", "task", "dataset", "split", "name", "step", "model", "variant", "input_h", "input_w")
_BENCHMARK_KEY = ("run_id", "model", "variant", "resolution", "batch_size", "device", "dtype")


def _insert(session: Session, model: type[Any]) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL share its API)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def _upsert(session: Session, model: type[Any], rows: list[dict[str, Any]], key: tuple[str, ...]) -> int:
    """Insert ``rows``, replacing the non-key columns of rows whose key already exists."""
    unique = list({tuple(row[column] for column in key): row for row in rows}.values())
    if not unique:
        return 0
    statement = _insert(session, model)
    updates = {column: statement.excluded[column] for column in unique[0] if column not in key}
    session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=updates), unique)
    return len(unique)


def lost_connection(error: BaseException, url: str) -> bool:
    """Whether ``error`` (or what caused it) is the store's database connection lost or refused: worth
    retrying. On PostgreSQL every driver ``OperationalError`` is (psycopg raises it for a refused, closed
    or terminated connection; a bad statement raises others); on SQLite only an invalidated connection."""
    postgres = parse_url(url).get_backend_name() == "postgresql"
    while error is not None:
        if isinstance(error, DBAPIError) and (error.connection_invalidated
                                              or (postgres and isinstance(error, OperationalError))):
            return True
        error = error.__cause__
    return False


def retry_lost_connection(action: Callable[[], T], url: str, what: str) -> T:
    """``action()``, again after each of ``RETRY_DELAYS_S`` while it fails with a lost connection
    (``lost_connection``), each retry logged as a warning; then the last error as ``StoreUnavailableError``."""
    for attempt, delay in enumerate(RETRY_DELAYS_S, 1):
        try:
            return action()
        except (DBAPIError, StoreError) as error:
            if not lost_connection(error, url):
                raise
            reason = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
            log.warning("lost the connection to the results store %s while %s (%s); retry %d of %d in %.1f s",
                        display_url(url), what, reason, attempt, len(RETRY_DELAYS_S), delay)
            time.sleep(delay)
    try:
        return action()
    except (DBAPIError, StoreError) as error:
        if not lost_connection(error, url):
            raise
        raise StoreUnavailableError(
            f"lost the connection to the results store {display_url(url)} while {what}, and it was not back "
            f"after {len(RETRY_DELAYS_S)} retries over {sum(RETRY_DELAYS_S):.0f} s: "
            f"{' '.join(str(getattr(error, 'orig', None) or error).split())}. Nothing of it was written; once the "
            f"database is up, run again (a stage whose result is current is only recorded)") from error


def _error_text(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return "".join(traceback.format_exception(error)).rstrip()


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; the store writes UTC only.
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON-safe copy (paths and other objects as text)."""
    return json.loads(json.dumps(dict(mapping or {}), default=str))


def _artifact_values(name: str, url: str) -> dict[str, Any]:
    """The artifact row of the file at ``url``, hashed now; ``FileNotFoundError`` when there is none."""
    if not artifact_storage.exists(url):
        raise FileNotFoundError(f"cannot register artifact {url}: no file there")
    return {"name": name or url.rstrip("/").rsplit("/", 1)[-1], "url": url, "sha256": artifact_storage.sha256(url),
            "size_bytes": None, "recorded_at": utcnow()}


class ResultsWriter:
    """Writes results into the store at ``url``; use ``open_writer`` to get one."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def record_run(
        self,
        experiment: str,
        run_key: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        status: str = "completed",
        error: BaseException | str | None = None,
        metrics: Iterable[MetricRecord | Mapping[str, Any]] = (),
        benchmarks: Iterable[BenchmarkRecord | Mapping[str, Any]] = (),
        artifacts: Mapping[str, str] | None = None,
        flow_name: str = "",
        flow_run_id: str | None = None,
        git_commit: str | None = None,
        params: Mapping[str, Any] | None = None,
        hardware: Mapping[str, Any] | None = None,
        sweep: str = "",
    ) -> dict[str, Any]:
        """Record one finished attempt of run ``run_key`` (its real start and end, in UTC) in one transaction.

        The attempt is identified by its start: recording the same attempt again changes nothing
        but its rows' values. When it is the run's newest attempt, the run takes its status, error
        (an exception is stored with its traceback), times and exactly its ``metrics`` /
        ``benchmarks`` / ``artifacts`` ({name: fsspec URL}, hashed before the transaction); a failed
        newest attempt marks the run failed and keeps the rows of the attempt that produced them. An
        older attempt recorded late only joins the history. ``sweep`` marks the experiment as one of
        that sweep's. Raises ``ValueError`` for an invalid row (nothing is written), ``StoreError``
        when ``run_key`` belongs to another experiment, ``StoreUnavailableError`` when the connection to
        PostgreSQL was lost and stayed lost through every retry (``retry_lost_connection``). Returns the run id, whether the attempt was
        the newest, the run's status and the number of rows written.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"a recorded attempt is 'completed' or 'failed', got {status!r}")
        started, finished = _as_utc(started_at), _as_utc(finished_at)
        if finished < started:
            raise ValueError(f"run {run_key!r}: finished_at {finished.isoformat()} is before started_at "
                             f"{started.isoformat()}")
        now = utcnow()
        metric_values = [{**as_record(MetricRecord, row).to_dict(), "recorded_at": now} for row in metrics]
        benchmark_values = [{**as_record(BenchmarkRecord, row).to_dict(), "recorded_at": now} for row in benchmarks]
        artifact_values = [_artifact_values(name, url) for name, url in (artifacts or {}).items() if url]
        error_text = None if error is None else _error_text(error)

        def transaction() -> dict[str, Any]:  # run again as a whole when its connection is lost
            with self._sessions.begin() as session:
                run_id = self._claim_run(session, experiment, run_key, sweep)
                self._write_attempt(session, run_id, started, finished, status, error_text, flow_run_id)
                newest = session.scalar(select(func.max(RunAttempt.started_at)).where(RunAttempt.run_id == run_id))
                is_newest = _as_utc(newest) == started
                counts = {"metrics": 0, "benchmarks": 0, "artifacts": 0}
                if is_newest:
                    if status == "completed":
                        counts = self._replace_rows(session, run_id, metric_values, benchmark_values,
                                                    artifact_values)
                    run = session.get(Run, run_id, populate_existing=True)
                    run.status, run.error = status, error_text
                    run.started_at, run.finished_at = started, finished
                    run.duration_s = (finished - started).total_seconds()
                    run.flow_run_id = flow_run_id
                    run.git_commit, run.flow_name = git_commit, flow_name
                    run.params = _plain(params)
                    run.hardware = _plain(hardware)
                status_now = session.scalar(select(Run.status).where(Run.id == run_id))
                return {"run_id": run_id, "newest": is_newest, "status": status_now, **counts}

        return retry_lost_connection(transaction, self.url, f"recording run {run_key!r}")

    @staticmethod
    def _claim_run(session: Session, experiment: str, run_key: str, sweep: str) -> int:
        """The id of run ``run_key`` of ``experiment``, created (running, until its attempt is written) on first
        use. The upsert takes the row's lock (PostgreSQL; SQLite's writers hold the database lock), so
        recordings of one run queue up."""
        if not isinstance(run_key, str) or not run_key:
            raise ValueError(f"run key must be a non-empty string, got {run_key!r}")
        experiment_id = ResultsWriter._experiment_id(session, experiment)
        if sweep:
            session.execute(Experiment.__table__.update().where(Experiment.id == experiment_id).values(sweep=sweep))
        owner = session.scalar(select(Run.experiment_id).where(Run.run_key == run_key))
        if owner is not None and owner != experiment_id:
            raise StoreError(f"run key {run_key!r} already belongs to another experiment than {experiment!r}")
        statement = _insert(session, Run).values(experiment_id=experiment_id, run_key=run_key, attempts=0)
        session.execute(statement.on_conflict_do_update(index_elements=["run_key"], set_={"run_key": run_key}))
        return session.scalars(select(Run.id).where(Run.run_key == run_key)).one()

    @staticmethod
    def _experiment_id(session: Session, name: str) -> int:
        statement = _insert(session, Experiment).values(name=name, description="", created_at=utcnow())
        session.execute(statement.on_conflict_do_nothing(index_elements=["name"]))
        return session.scalars(select(Experiment.id).where(Experiment.name == name)).one()

    @staticmethod
    def _write_attempt(session: Session, run_id: int, started: datetime, finished: datetime, status: str,
                       error: str | None, flow_run_id: str | None) -> None:
        values = {"run_id": run_id, "status": status, "error": error, "flow_run_id": flow_run_id,
                  "started_at": started, "finished_at": finished, "duration_s": (finished - started).total_seconds(),
                  "recorded_at": utcnow()}
        _upsert(session, RunAttempt, [values], ("run_id", "started_at"))
        count = session.scalar(select(func.count()).select_from(RunAttempt).where(RunAttempt.run_id == run_id))
        session.execute(Run.__table__.update().where(Run.id == run_id).values(attempts=count))

    @staticmethod
    def _replace_rows(session: Session, run_id: int, metrics: list[dict[str, Any]], benchmarks: list[dict[str, Any]],
                      artifacts: list[dict[str, Any]]) -> dict[str, int]:
        """Make the run's metric, benchmark and artifact rows exactly these."""
        for model in (Metric, Benchmark, Artifact):
            session.execute(delete(model).where(model.run_id == run_id))
        return {
            "metrics": _upsert(session, Metric, [{**row, "run_id": run_id} for row in metrics], _METRIC_KEY),
            "benchmarks": _upsert(session, Benchmark, [{**row, "run_id": run_id} for row in benchmarks],
                                  _BENCHMARK_KEY),
            "artifacts": _upsert(session, Artifact, [{**row, "run_id": run_id} for row in artifacts], ("url",)),
        }


def open_writer(url: str | None = None, *, migrate: bool = True) -> ResultsWriter:
    """A writer for the store at ``url`` (default: ``services.settings.store_url()``).

    With ``migrate`` the schema is created or brought to the newest revision first
    (safe when several processes do it at once).
    """
    target = url or settings.store_url()
    if migrate:
        retry_lost_connection(lambda: upgrade(target), target, "bringing its schema up to date")
    engine = make_engine(target)
    retry_lost_connection(lambda: check_connection(engine, target), target, "opening it")
    return ResultsWriter(target, engine)
