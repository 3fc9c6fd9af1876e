"""Reading results: the query API the dashboard and the CLI use.

A reader opens the store read-only. Queries return pandas DataFrames with UTC timestamps.
Speed-up of a benchmark row = its img/s over the ``baseline`` variant's img/s for the same
model, resolution, batch size, device and dtype, taken from the same run when that run
measured the baseline, else from the newest baseline measured in the selected runs.

A point of accuracy against speed-up is one configuration: an accuracy and a benchmark of the same model
and variant pair only when their input size and acceleration layout (``itpn.records.TokenLayout``,
``LAYOUT_FIELDS``) are equal. An accuracy without such a benchmark keeps a NaN speed-up and says in
``missing`` which half is missing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Engine, Select, func, select

from itpn.records import LAYOUT_FIELDS, MAIN_METRICS, TokenLayout, model_family, model_size
from services import settings
from services.store.engine import (
    StoreNotInitialisedError,
    StoreSchemaError,
    check_connection,
    display_url,
    make_engine,
    parse_url,
    sqlite_path,
)
from services.store.migrate import current_revision, head_revision
from services.store.models import Artifact, Benchmark, Experiment, LayoutColumns, Metric, Run, RunAttempt

BASELINE = "baseline"
_SPEED_KEY = ["model", "resolution", "batch_size", "device", "dtype"]
_TIMESTAMPS = ("created_at", "started_at", "finished_at", "recorded_at")


def pareto_front(points: pd.DataFrame, x: str = "speedup", y: str = "accuracy") -> pd.DataFrame:
    """The points no other point beats on both ``x`` and ``y`` (higher is better), by ascending x."""
    ordered = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[False, False])
    keep: list[Any] = []
    best_y = float("-inf")
    for index, value in ordered[y].items():
        if value > best_y:
            keep.append(index)
            best_y = value
    return ordered.loc[keep].sort_values(x)


def describe_layout(row: Any) -> str:
    """The configuration of a row with layout columns in words (``TokenLayout.describe``); ``""`` without one."""
    layout = TokenLayout.from_mapping({key: getattr(row, key, None) for key in LAYOUT_FIELDS})
    return layout.describe() if layout is not None else ""


def _layout_columns(table: type[LayoutColumns]) -> list[Any]:
    return [getattr(table, key) for key in LAYOUT_FIELDS]


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _TIMESTAMPS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


class ResultsReader:
    """Read-only access to the store; use ``open_reader`` to get one."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _frame(self, statement: Select[Any]) -> pd.DataFrame:
        with self.engine.connect() as connection:
            result = connection.execute(statement)
            frame = pd.DataFrame.from_records([tuple(row) for row in result], columns=list(result.keys()))
        return _utc(frame)

    def is_empty(self) -> bool:
        """Whether no run was recorded yet."""
        with self.engine.connect() as connection:
            return not connection.scalar(select(func.count()).select_from(Run))

    def experiments(self) -> pd.DataFrame:
        """Experiments with their number of runs."""
        runs = func.count(Run.id).label("runs")
        statement = (
            select(
                Experiment.id.label("experiment_id"),
                Experiment.name,
                Experiment.description,
                Experiment.sweep,
                Experiment.created_at,
                runs,
            )
            .outerjoin(Run, Run.experiment_id == Experiment.id)
            .group_by(Experiment.id)
            .order_by(Experiment.name)
        )
        return self._frame(statement)

    def runs(self, experiment: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Runs, newest first: status, error, timings, attempts, git commit, params, hardware."""
        statement = (
            select(
                Run.id.label("run_id"),
                Experiment.name.label("experiment"),
                Experiment.sweep,
                Run.run_key,
                Run.flow_name,
                Run.flow_run_id,
                Run.status,
                Run.error,
                Run.attempts,
                Run.started_at,
                Run.finished_at,
                Run.duration_s,
                Run.git_commit,
                Run.params,
                Run.hardware,
            )
            .join(Experiment, Run.experiment_id == Experiment.id)
            .order_by(Run.started_at.desc(), Run.id.desc())
        )
        if experiment is not None:
            statement = statement.where(Experiment.name == experiment)
        if status is not None:
            statement = statement.where(Run.status == status)
        return self._frame(statement)

    def metrics(
        self,
        *,
        experiment: str | None = None,
        run_id: int | None = None,
        task: str | None = None,
        split: str | None = None,
        name: str | None = None,
        completed_only: bool = False,
    ) -> pd.DataFrame:
        """Metric rows with their run's experiment, status and end time, and the layout columns."""
        statement = (
            select(
                Metric.run_id,
                Experiment.name.label("experiment"),
                Run.status,
                Run.finished_at,
                Metric.task,
                Metric.dataset,
                Metric.split,
                Metric.model,
                Metric.variant,
                Metric.name,
                Metric.step,
                Metric.value,
                Metric.recorded_at,
                *_layout_columns(Metric),
            )
            .join(Run, Metric.run_id == Run.id)
            .join(Experiment, Run.experiment_id == Experiment.id)
            .order_by(Metric.run_id, Metric.task, Metric.name, Metric.step)
        )
        conditions = {
            Experiment.name: experiment,
            Metric.run_id: run_id,
            Metric.task: task,
            Metric.split: split,
            Metric.name: name,
        }
        for column, wanted in conditions.items():
            if wanted is not None:
                statement = statement.where(column == wanted)
        if completed_only:
            statement = statement.where(Run.status == "completed")
        return self._frame(statement)

    def training_curves(self, run_id: int) -> pd.DataFrame:
        """Every metric of one run by step (loss, lr, accuracy during training ...)."""
        return self.metrics(run_id=run_id)

    def benchmarks(self, experiment: str | None = None, device: str | None = None) -> pd.DataFrame:
        """Benchmark rows of completed runs with a ``speedup`` column (NaN where no baseline exists), their
        layout columns and ``configuration`` (the layout in words)."""
        statement = (
            select(
                Benchmark.run_id,
                Experiment.name.label("experiment"),
                Benchmark.model,
                Benchmark.variant,
                Benchmark.resolution,
                Benchmark.batch_size,
                Benchmark.device,
                Benchmark.dtype,
                Benchmark.images_per_s,
                Benchmark.latency_ms,
                Benchmark.memory_mb,
                Benchmark.gflops,
                Benchmark.recorded_at,
                *_layout_columns(Benchmark),
            )
            .join(Run, Benchmark.run_id == Run.id)
            .join(Experiment, Run.experiment_id == Experiment.id)
            .where(Run.status == "completed")
            .order_by(Benchmark.model, Benchmark.device, Benchmark.resolution, Benchmark.variant)
        )
        if experiment is not None:
            statement = statement.where(Experiment.name == experiment)
        if device is not None:
            statement = statement.where(Benchmark.device == device)
        frame = self._frame(statement)
        for column in ("images_per_s", "latency_ms", "memory_mb", "gflops"):
            frame[column] = frame[column].astype(float)
        frame["speedup"] = _speedups(frame)
        frame["configuration"] = [describe_layout(row) for row in frame.itertuples()]
        return frame

    def accuracy_vs_speedup(
        self, experiment: str | None = None, device: str | None = None, split: str = "val"
    ) -> pd.DataFrame:
        """One row per (task, model, variant, configuration): the task's main metric and its speed-up.

        The accuracy is the newest value of the task's main metric (``MAIN_METRICS``) on ``split`` from
        completed runs, per input size and layout. Its speed-up comes from the largest-batch, newest
        benchmark of the same model and variant whose input size and layout (``LAYOUT_FIELDS``) are the
        same (only ``device``'s benchmarks when one is given); a benchmark of another size or layout
        never pairs. Without one, ``speedup`` is NaN and ``missing`` names the missing half (e.g. ``no
        benchmark at 128×128 for window_gathering``); paired rows have ``missing == ""``.
        ``configuration`` is the layout in words, ``benchmark_dtype`` the benchmark's dtype, ``eval_device`` and
        ``eval_dtype`` where the accuracy was measured (its run's GPU or ``cpu``; its fine-tune's ``amp_dtype``).
        """
        metrics = self.metrics(experiment=experiment, split=split, completed_only=True)
        main = metrics[metrics["task"].map(MAIN_METRICS) == metrics["name"]]
        main = main[main["variant"] != ""]
        newest = main.sort_values(["finished_at", "step", "recorded_at"]).drop_duplicates(
            ["task", "dataset", "model", "variant", *LAYOUT_FIELDS], keep="last"
        )
        # A run's rows without a layout (an OpenMMLab fine-tune's validation curve) repeat the final value its
        # rows with one hold: only a run that has no row with a layout shows them, as recorded before 0004.
        run_key = ["run_id", "task", "dataset", "model", "variant"]
        laid_out = newest.loc[newest["input_h"] > 0, run_key].drop_duplicates()
        repeated = newest[run_key].merge(laid_out, how="left", indicator=True)["_merge"].eq("both").to_numpy()
        newest = newest[~(repeated & (newest["input_h"] <= 0).to_numpy())]
        accuracy = newest[["task", "dataset", "model", "variant", "name", "value", "run_id", *LAYOUT_FIELDS]].rename(
            columns={"name": "metric", "value": "accuracy"}
        )
        speed = self.benchmarks(experiment=experiment, device=device)
        speed = speed[speed["input_h"] > 0].sort_values(["batch_size", "recorded_at"]).drop_duplicates(
            ["model", "variant", "device", *LAYOUT_FIELDS], keep="last"
        )[["model", "variant", "device", "resolution", "batch_size", "dtype", "images_per_s", "speedup",
           *LAYOUT_FIELDS]].rename(columns={"dtype": "benchmark_dtype"})
        keys = ["model", "variant", *LAYOUT_FIELDS]
        with_layout = accuracy[accuracy["input_h"] > 0]
        points = with_layout.merge(speed, on=keys, how="left")
        points = pd.concat([points, accuracy[accuracy["input_h"] <= 0]], ignore_index=True)
        points["configuration"] = [describe_layout(row) for row in points.itertuples()]
        points["missing"] = [_missing_half(row, device) for row in points.itertuples()]
        runs = self.runs().set_index("run_id")
        points["eval_device"] = [(runs.at[run, "hardware"] or {}).get("gpu", "cpu") if run in runs.index else ""
                                 for run in points["run_id"]]
        points["eval_dtype"] = [_evaluation_dtype(runs.at[run, "params"] if run in runs.index else None, task)
                                for run, task in zip(points["run_id"], points["task"])]
        points.insert(3, "size", points["model"].map(model_size))
        points.insert(3, "family", points["model"].map(model_family))
        return points.sort_values(["task", "model", "speedup"]).reset_index(drop=True)

    def attempts(self, run_id: int | None = None, experiment: str | None = None) -> pd.DataFrame:
        """Every attempt of the runs (oldest first): status, error, real start, end and duration."""
        statement = (
            select(
                RunAttempt.run_id,
                Experiment.name.label("experiment"),
                Run.flow_name,
                RunAttempt.status,
                RunAttempt.error,
                RunAttempt.flow_run_id,
                RunAttempt.started_at,
                RunAttempt.finished_at,
                RunAttempt.duration_s,
            )
            .join(Run, RunAttempt.run_id == Run.id)
            .join(Experiment, Run.experiment_id == Experiment.id)
            .order_by(RunAttempt.run_id, RunAttempt.started_at)
        )
        if run_id is not None:
            statement = statement.where(RunAttempt.run_id == run_id)
        if experiment is not None:
            statement = statement.where(Experiment.name == experiment)
        return self._frame(statement)

    def sweeps(self) -> list[str]:
        """The names of the recorded sweeps."""
        with self.engine.connect() as connection:
            return list(connection.scalars(select(Experiment.sweep).where(Experiment.sweep != "").distinct()
                                           .order_by(Experiment.sweep)))

    def sweep_comparison(self, sweep: str, split: str = "val") -> pd.DataFrame:
        """One row per (experiment of ``sweep``, task): the point's model, trained acceleration variant,
        seed and pre-training recipe (``experiment.sweep_point`` of its parameters), the task's main
        metric for that variant, the variant's speed-up (benchmarks recorded in the sweep, shared
        stages included), and the fine-tune's real start, end and duration."""
        runs = self.runs(status="completed")
        runs = runs[(runs["sweep"] == sweep) & runs["flow_name"].str.startswith("finetune_")]
        columns = ["experiment", "model", "variant", "seed", "recipe", "task", "metric", "accuracy", "speedup",
                   "started_at", "finished_at", "duration_s", "run_id"]
        if runs.empty:
            return pd.DataFrame(columns=columns)
        metrics = self.metrics(split=split, completed_only=True)
        metrics = metrics[metrics["run_id"].isin(runs["run_id"])]
        main = metrics[metrics["task"].map(MAIN_METRICS) == metrics["name"]]
        speed = self.benchmarks()
        speed = speed[speed["experiment"].isin(self._sweep_experiments(sweep))]
        speed = speed.sort_values(["batch_size", "recorded_at"]).drop_duplicates(["model", "variant"], keep="last")
        rows = []
        for run in runs.itertuples():
            point = (run.params or {}).get("experiment", {}).get("sweep_point", {})
            model, variant = point.get("model", ""), point.get("variant", BASELINE)
            mine = main[(main["run_id"] == run.run_id) & (main["variant"] == variant)]
            for row in mine.sort_values("step").drop_duplicates(["task"], keep="last").itertuples():
                measured = speed[(speed["model"] == model) & (speed["variant"] == variant)]["speedup"]
                rows.append({"experiment": run.experiment, "model": model, "variant": variant,
                             "seed": point.get("seed"), "recipe": point.get("recipe", ""), "task": row.task,
                             "metric": row.name, "accuracy": row.value,
                             "speedup": 1.0 if variant == BASELINE else (measured.iloc[0] if len(measured) else None),
                             "started_at": run.started_at, "finished_at": run.finished_at,
                             "duration_s": run.duration_s, "run_id": run.run_id})
        return pd.DataFrame(rows, columns=columns).sort_values(["task", "model", "variant", "seed"]).reset_index(
            drop=True)

    def _sweep_experiments(self, sweep: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.scalars(select(Experiment.name).where(Experiment.sweep == sweep)))

    def artifacts(self, run_id: int | None = None) -> pd.DataFrame:
        """Recorded artifacts: URL, sha256, size."""
        statement = select(
            Artifact.id.label("artifact_id"),
            Artifact.run_id,
            Artifact.name,
            Artifact.url,
            Artifact.sha256,
            Artifact.size_bytes,
            Artifact.recorded_at,
        ).order_by(Artifact.recorded_at.desc())
        if run_id is not None:
            statement = statement.where(Artifact.run_id == run_id)
        return self._frame(statement)


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _evaluation_dtype(params: Any, task: str) -> str:
    """The dtype a run's fine-tune of ``task`` evaluated in: its section's ``amp_dtype`` (float32 without one)."""
    section = ((params or {}).get("finetune") or {}).get(task) or {}
    dtype = str(section.get("amp_dtype", "fp32"))
    return _DTYPES.get(dtype, dtype)


def _missing_half(point: Any, device: str | None) -> str:
    """Why an accuracy row has no speed-up: ``""`` when it has one."""
    if point.input_h <= 0:
        return f"{point.variant}: its accuracy was recorded without input size and layout, so no benchmark pairs"
    if point.speedup == point.speedup:  # not NaN
        return ""
    where = f" on {device}" if device else ""
    if point.images_per_s == point.images_per_s:
        return (f"no baseline benchmark at {int(point.input_h)}×{int(point.input_w)}{where} for "
                f"{point.variant}'s speed-up")
    return f"no benchmark at {int(point.input_h)}×{int(point.input_w)} for {point.variant}{where} with its layout"


def _speedups(frame: pd.DataFrame) -> pd.Series:
    baselines = frame[frame["variant"] == BASELINE]
    same_run = baselines[["run_id", *_SPEED_KEY, "images_per_s"]].rename(columns={"images_per_s": "base_run"})
    newest = (
        baselines.sort_values("recorded_at")
        .drop_duplicates(_SPEED_KEY, keep="last")[[*_SPEED_KEY, "images_per_s"]]
        .rename(columns={"images_per_s": "base_newest"})
    )
    merged = frame.merge(same_run, on=["run_id", *_SPEED_KEY], how="left").merge(newest, on=_SPEED_KEY, how="left")
    reference = merged["base_run"].fillna(merged["base_newest"])
    return pd.Series((merged["images_per_s"] / reference).to_numpy(), index=frame.index, name="speedup")


def open_reader(url: str | None = None) -> ResultsReader:
    """A read-only reader for the store at ``url`` (default: ``services.settings.store_url()``).

    Raises ``StoreNotInitialisedError`` when the store was never created,
    ``StoreSchemaError`` when its schema is at another revision, and
    ``StoreUnavailableError`` when the database cannot be reached.
    """
    target = url or settings.store_url()
    parsed = parse_url(target)
    empty_hint = (
        f"the results store at {display_url(target)} has no results yet: run `itpn demo` to fill it "
        "(or `itpn store upgrade` to create it empty)"
    )
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None and not path.exists():
            raise StoreNotInitialisedError(empty_hint)
    engine = make_engine(target, read_only=True)
    check_connection(engine, target)
    revision = current_revision(engine)
    if revision is None:
        engine.dispose()
        raise StoreNotInitialisedError(empty_hint)
    head = head_revision()
    if revision != head:
        engine.dispose()
        raise StoreSchemaError(
            f"the results store at {display_url(target)} is at schema revision {revision}, "
            f"this code expects {head}: run `itpn store upgrade`"
        )
    return ResultsReader(target, engine)
