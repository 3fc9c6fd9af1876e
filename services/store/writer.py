"""Writing results: experiments, runs, metrics, benchmarks and artifacts.

Every public method is one transaction, and every write is an upsert on the row's natural
key, so a flow that runs again (after a crash, a retry or on purpose) rewrites its rows
instead of adding copies. A failed batch writes nothing; ``run()`` marks the run failed
with the error and re-raises.

A run is the work its key names; each execution of it is an attempt (``run_attempts``), kept as
history. The run's status, times and rows are those of its newest attempt: ``start_run`` opens an
attempt and clears the rows an earlier attempt wrote, and ``record_run`` writes a finished attempt
with all its rows in one transaction that holds the run's row lock, so two processes recording the
same run at once leave one run with the rows of the newer attempt, no copy and no stale row.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import fsspec
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from services import artifacts as artifact_storage
from services import settings
from services.store.engine import StoreError, check_connection, make_engine
from services.store.migrate import upgrade
from services.store.models import Artifact, Benchmark, Experiment, Metric, Run, RunAttempt, utcnow

_METRIC_KEY = ("run_id", "task", "dataset", "split", "name", "step", "model", "variant")
_BENCHMARK_KEY = ("run_id", "model", "variant", "resolution", "batch_size", "device", "dtype")


@dataclass(frozen=True)
class MetricRow:
    """One metric value. ``model``/``variant`` are ``''`` when the metric is not per model or variant."""

    task: str
    dataset: str
    split: str
    name: str
    value: float
    step: int = 0
    model: str = ""
    variant: str = ""


@dataclass(frozen=True)
class BenchmarkRow:
    """One throughput measurement of a model's acceleration variant."""

    model: str
    variant: str
    resolution: int
    batch_size: int
    images_per_s: float
    device: str
    latency_ms: float | None = None
    memory_mb: float | None = None
    gflops: float | None = None
    dtype: str = "float32"


RowT = TypeVar("RowT", MetricRow, BenchmarkRow)


def _coerce_row(row_type: type[RowT], row: RowT | Mapping[str, Any]) -> RowT:
    if isinstance(row, row_type):
        return row
    if not isinstance(row, Mapping):
        raise TypeError(f"expected a {row_type.__name__} or a mapping, got {type(row).__name__}")
    allowed = {field.name for field in fields(row_type)}
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise ValueError(f"{row_type.__name__} got unknown keys {unknown}; allowed keys are {sorted(allowed)}")
    try:
        return row_type(**row)
    except TypeError as exc:
        raise ValueError(f"{row_type.__name__} {dict(row)!r} is incomplete: {exc}") from exc


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number}; the store keeps finite values only")
    return number


def _optional_finite(value: Any, what: str) -> float | None:
    return None if value is None else _finite(value, what)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _text(value: Any, what: str, *, required: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    if required and not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _metric_values(run_id: int, row: MetricRow, recorded_at: datetime) -> dict[str, Any]:
    what = f"metric {row.task}/{row.dataset}/{row.split}/{row.name} at step {row.step}"
    return {
        "run_id": run_id,
        "task": _text(row.task, "metric task", required=True),
        "dataset": _text(row.dataset, "metric dataset", required=True),
        "split": _text(row.split, "metric split", required=True),
        "name": _text(row.name, "metric name", required=True),
        "step": _integer(row.step, f"{what}: step"),
        "model": _text(row.model, "metric model", required=False),
        "variant": _text(row.variant, "metric variant", required=False),
        "value": _finite(row.value, f"{what}: value"),
        "recorded_at": recorded_at,
    }


def _benchmark_values(run_id: int, row: BenchmarkRow, recorded_at: datetime) -> dict[str, Any]:
    what = f"benchmark {row.model}/{row.variant}"
    values = {
        "run_id": run_id,
        "model": _text(row.model, "benchmark model", required=True),
        "variant": _text(row.variant, "benchmark variant", required=True),
        "resolution": _integer(row.resolution, f"{what}: resolution"),
        "batch_size": _integer(row.batch_size, f"{what}: batch_size"),
        "device": _text(row.device, "benchmark device", required=True),
        "dtype": _text(row.dtype, "benchmark dtype", required=True),
        "images_per_s": _finite(row.images_per_s, f"{what}: images_per_s"),
        "latency_ms": _optional_finite(row.latency_ms, f"{what}: latency_ms"),
        "memory_mb": _optional_finite(row.memory_mb, f"{what}: memory_mb"),
        "gflops": _optional_finite(row.gflops, f"{what}: gflops"),
        "recorded_at": recorded_at,
    }
    if values["images_per_s"] <= 0:
        raise ValueError(f"{what}: images_per_s must be positive, got {values['images_per_s']}")
    return values


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


def read_metrics_jsonl(
    path: str | Path,
    *,
    task: str,
    dataset: str,
    split: str = "train",
    model: str = "",
    variant: str = "",
    step_key: str = "step",
) -> list[MetricRow]:
    """The metric rows of a metrics log: one JSON object per line, ``step`` plus numeric values.

    Every numeric key but the step becomes a metric of that name at that step; text values
    (timestamps, tags) are not metrics and are left out. ``path`` may be any fsspec URL.
    A line that is not a JSON object with a step raises ``ValueError`` naming file and line.
    """
    rows: list[MetricRow] = []
    with fsspec.open(str(path), "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where} is not valid JSON: {exc}") from exc
            if not isinstance(record, dict) or step_key not in record:
                raise ValueError(f"{where} must be a JSON object with a {step_key!r} key")
            step = _integer(record[step_key], f"{where}: {step_key}")
            for name, value in record.items():
                if name == step_key or isinstance(value, str | bool | list | dict) or value is None:
                    continue
                _finite(value, f"{where}: {name}")
                rows.append(MetricRow(task, dataset, split, name, value, step, model, variant))
    return rows


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

    # -- experiments and runs -------------------------------------------------

    def record_experiment(self, name: str, description: str = "") -> int:
        """The id of experiment ``name``, created on first use; a non-empty description is updated."""
        _text(name, "experiment name", required=True)
        with self._sessions.begin() as session:
            return self._experiment_id(session, name, description)

    def start_run(
        self,
        experiment: str,
        run_key: str,
        *,
        flow_name: str = "",
        flow_run_id: str | None = None,
        git_commit: str | None = None,
        params: Mapping[str, Any] | None = None,
        hardware: Mapping[str, Any] | None = None,
    ) -> int:
        """Mark run ``run_key`` running in a new attempt (started now) and return its id.

        The run key names the work (e.g. flow name + a hash of its parameters), so a flow
        that runs again reuses its run: the row is reset to running, ``attempts`` counts
        up, and the rows the earlier attempt wrote are removed, so the run holds exactly
        what this attempt writes.
        """
        started = utcnow()
        with self._sessions.begin() as session:
            run_id = self._claim_run(session, experiment, run_key, {
                "flow_name": flow_name, "flow_run_id": flow_run_id, "git_commit": git_commit,
                "params": params, "hardware": hardware})
            self._write_attempt(session, run_id, started, None, "running", None, flow_run_id)
            self._replace_rows(session, run_id, [], [], [])
            return run_id

    def finish_run(self, run_id: int) -> None:
        """Mark the run completed and record its end time and duration."""
        self._end_run(run_id, "completed", None)

    def fail_run(self, run_id: int, error: BaseException | str) -> None:
        """Mark the run failed with ``error`` (an exception is stored with its traceback)."""
        self._end_run(run_id, "failed", _error_text(error))

    @contextmanager
    def run(
        self,
        experiment: str,
        run_key: str,
        *,
        flow_name: str = "",
        flow_run_id: str | None = None,
        git_commit: str | None = None,
        params: Mapping[str, Any] | None = None,
        hardware: Mapping[str, Any] | None = None,
    ) -> Iterator[int]:
        """Start a run, yield its id, then mark it completed, or failed with the error (re-raised)."""
        run_id = self.start_run(
            experiment,
            run_key,
            flow_name=flow_name,
            flow_run_id=flow_run_id,
            git_commit=git_commit,
            params=params,
            hardware=hardware,
        )
        try:
            yield run_id
        except BaseException as exc:
            self.fail_run(run_id, exc)
            raise
        self.finish_run(run_id)

    def record_run(
        self,
        experiment: str,
        run_key: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        status: str = "completed",
        error: BaseException | str | None = None,
        metrics: Iterable[MetricRow | Mapping[str, Any]] = (),
        benchmarks: Iterable[BenchmarkRow | Mapping[str, Any]] = (),
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
        but its rows' values. When it is the run's newest attempt, the run takes its status, error,
        times and exactly its ``metrics`` / ``benchmarks`` / ``artifacts`` ({name: fsspec URL},
        hashed before the transaction); a failed newest attempt marks the run failed and keeps the
        rows of the attempt that produced them. An older attempt recorded late only joins the
        history. ``sweep`` marks the experiment as one of that sweep's. Returns the run id, whether the attempt was the newest, the run's status and the
        number of rows written.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"a recorded attempt is 'completed' or 'failed', got {status!r}")
        started, finished = _as_utc(started_at), _as_utc(finished_at)
        if finished < started:
            raise ValueError(f"run {run_key!r}: finished_at {finished.isoformat()} is before started_at "
                             f"{started.isoformat()}")
        now = utcnow()
        metric_values = [_metric_values(0, _coerce_row(MetricRow, row), now) for row in metrics]
        benchmark_values = [_benchmark_values(0, _coerce_row(BenchmarkRow, row), now) for row in benchmarks]
        artifact_values = [self._artifact_values(None, url, name=name) for name, url in (artifacts or {}).items() if url]
        error_text = None if error is None else _error_text(error)
        with self._sessions.begin() as session:
            run_id = self._claim_run(session, experiment, run_key, {
                "flow_name": flow_name, "flow_run_id": flow_run_id, "git_commit": git_commit,
                "params": params, "hardware": hardware}, reset=False, sweep=sweep)
            self._write_attempt(session, run_id, started, finished, status, error_text, flow_run_id)
            newest = session.scalar(select(func.max(RunAttempt.started_at)).where(RunAttempt.run_id == run_id))
            is_newest = _as_utc(newest) == started
            counts = {"metrics": 0, "benchmarks": 0, "artifacts": 0}
            if is_newest:
                if status == "completed":
                    counts = self._replace_rows(session, run_id, metric_values, benchmark_values, artifact_values)
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

    def attempts(self, run_id: int) -> list[dict[str, Any]]:
        """The run's attempts, oldest first: status, error, flow run id, start, end, duration."""
        with self._sessions.begin() as session:
            self._require_run(session, run_id)
            rows = session.scalars(select(RunAttempt).where(RunAttempt.run_id == run_id)
                                   .order_by(RunAttempt.started_at)).all()
            return [{"status": row.status, "error": row.error, "flow_run_id": row.flow_run_id,
                     "started_at": _as_utc(row.started_at),
                     "finished_at": None if row.finished_at is None else _as_utc(row.finished_at),
                     "duration_s": row.duration_s} for row in rows]

    # -- results ----------------------------------------------------------------

    def add_metrics(self, run_id: int, rows: Iterable[MetricRow | Mapping[str, Any]]) -> int:
        """Write metric rows in one transaction; returns how many distinct rows were written."""
        now = utcnow()
        values = [_metric_values(run_id, _coerce_row(MetricRow, row), now) for row in rows]
        with self._sessions.begin() as session:
            self._require_run(session, run_id)
            return _upsert(session, Metric, values, _METRIC_KEY)

    def add_benchmarks(self, run_id: int, rows: Iterable[BenchmarkRow | Mapping[str, Any]]) -> int:
        """Write benchmark rows in one transaction; returns how many distinct rows were written."""
        now = utcnow()
        values = [_benchmark_values(run_id, _coerce_row(BenchmarkRow, row), now) for row in rows]
        with self._sessions.begin() as session:
            self._require_run(session, run_id)
            return _upsert(session, Benchmark, values, _BENCHMARK_KEY)

    def ingest_metrics_jsonl(
        self,
        run_id: int,
        path: str | Path,
        *,
        task: str,
        dataset: str,
        split: str = "train",
        model: str = "",
        variant: str = "",
        step_key: str = "step",
    ) -> int:
        """Write a metrics log: one JSON object per line, ``step`` plus numeric values (loss, lr ...).

        Every numeric key but the step becomes a metric of that name at that step; text
        values (timestamps, tags) are not metrics and are left out. ``path`` may be any
        fsspec URL.
        """
        return self.add_metrics(run_id, read_metrics_jsonl(path, task=task, dataset=dataset, split=split, model=model,
                                                           variant=variant, step_key=step_key))

    def ingest_benchmark_json(self, run_id: int, path: str | Path) -> int:
        """Write a benchmark file: a JSON list of objects with ``BenchmarkRow``'s keys."""
        with fsspec.open(str(path), "rt", encoding="utf-8") as handle:
            try:
                records = json.load(handle)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(records, list):
            raise ValueError(f"{path} must hold a JSON list of benchmark rows, got {type(records).__name__}")
        return self.add_benchmarks(run_id, records)

    def register_artifact(
        self,
        run_id: int | None,
        url: str,
        *,
        name: str = "",
        sha256: str | None = None,
        size_bytes: int | None = None,
    ) -> int:
        """Record the artifact at ``url`` (hashed here when no sha256 is given); returns its id."""
        values = self._artifact_values(run_id, url, name=name, sha256=sha256, size_bytes=size_bytes)
        with self._sessions.begin() as session:
            if run_id is not None:
                self._require_run(session, run_id)
            _upsert(session, Artifact, [values], ("url",))
            return session.scalars(select(Artifact.id).where(Artifact.url == url)).one()

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _artifact_values(run_id: int | None, url: str, *, name: str = "", sha256: str | None = None,
                         size_bytes: int | None = None) -> dict[str, Any]:
        if sha256 is None:
            if not artifact_storage.exists(url):
                raise FileNotFoundError(f"cannot register artifact {url}: no file there")
            sha256 = artifact_storage.sha256(url)
        return {
            "run_id": run_id,
            "name": name or url.rstrip("/").rsplit("/", 1)[-1],
            "url": url,
            "sha256": sha256,
            "size_bytes": size_bytes,
            "recorded_at": utcnow(),
        }

    def _claim_run(self, session: Session, experiment: str, run_key: str, fields: dict[str, Any],
                   *, reset: bool = True, sweep: str = "") -> int:
        """Insert or update the run row of ``run_key`` and return its id. The upsert takes the row's
        lock (PostgreSQL; SQLite's writers hold the database lock), so recordings of one run queue up."""
        _text(run_key, "run key", required=True)
        experiment_id = self._experiment_id(session, experiment, "")
        if sweep:
            session.execute(Experiment.__table__.update().where(Experiment.id == experiment_id).values(sweep=sweep))
        owner = session.scalar(select(Run.experiment_id).where(Run.run_key == run_key))
        if owner is not None and owner != experiment_id:
            raise StoreError(f"run key {run_key!r} already belongs to another experiment than {experiment!r}")
        started = utcnow()
        record = {
            "run_key": run_key,
            "flow_name": fields["flow_name"],
            "flow_run_id": fields["flow_run_id"],
            "git_commit": fields["git_commit"],
            "params": _plain(fields["params"]),
            "hardware": _plain(fields["hardware"]),
            "status": "running",
            "error": None,
            "started_at": started,
            "finished_at": None,
            "duration_s": None,
        }
        statement = _insert(session, Run).values(experiment_id=experiment_id, attempts=0, **record)
        # reset: the run is running again; otherwise the upsert only locks the row (record_run decides)
        updates = {column: statement.excluded[column] for column in record} if reset else {"run_key": run_key}
        session.execute(statement.on_conflict_do_update(index_elements=["run_key"], set_=updates))
        return session.scalars(select(Run.id).where(Run.run_key == run_key)).one()

    @staticmethod
    def _write_attempt(session: Session, run_id: int, started: datetime, finished: datetime | None, status: str,
                       error: str | None, flow_run_id: str | None) -> None:
        values = {"run_id": run_id, "status": status, "error": error, "flow_run_id": flow_run_id,
                  "started_at": started, "finished_at": finished,
                  "duration_s": None if finished is None else (finished - started).total_seconds(),
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

    def _experiment_id(self, session: Session, name: str, description: str) -> int:
        statement = _insert(session, Experiment).values(name=name, description=description, created_at=utcnow())
        if description:
            statement = statement.on_conflict_do_update(index_elements=["name"], set_={"description": description})
        else:
            statement = statement.on_conflict_do_nothing(index_elements=["name"])
        session.execute(statement)
        return session.scalars(select(Experiment.id).where(Experiment.name == name)).one()

    def _require_run(self, session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise StoreError(f"no run with id {run_id} in the results store at {self.url}")
        return run

    def _end_run(self, run_id: int, status: str, error: str | None) -> None:
        with self._sessions.begin() as session:
            run = self._require_run(session, run_id)
            finished = utcnow()
            run.status = status
            run.error = error
            run.finished_at = finished
            run.duration_s = (finished - _as_utc(run.started_at)).total_seconds()
            attempt = session.scalars(select(RunAttempt).where(RunAttempt.run_id == run_id)
                                      .order_by(RunAttempt.started_at.desc()).limit(1)).first()
            if attempt is not None and attempt.status == "running":
                attempt.status, attempt.error, attempt.finished_at = status, error, finished
                attempt.duration_s = (finished - _as_utc(attempt.started_at)).total_seconds()


def open_writer(url: str | None = None, *, migrate: bool = True) -> ResultsWriter:
    """A writer for the store at ``url`` (default: ``services.settings.store_url()``).

    With ``migrate`` the schema is created or brought to the newest revision first
    (safe when several processes do it at once).
    """
    target = url or settings.store_url()
    if migrate:
        upgrade(target)
    engine = make_engine(target)
    check_connection(engine, target)
    return ResultsWriter(target, engine)
