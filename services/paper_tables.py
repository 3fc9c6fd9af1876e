"""The paper's ablation tables beside ours: ``configs/paper_numbers.yaml`` (the paper's numbers, transcribed
once) laid next to the runs ``itpn reproduce`` recorded in the results store.

A reproduced table's runs belong to the experiment ``reproduce-<table>-<scale>``; each run's params carry
``reproduce: {table, scale, row, variant}``. Rows of Tables 8 and 9 are pre-training ablations and take
their numbers from the runs of their row; rows of Table 7 and Figure 5 are acceleration variants of one
model and take them from the metric and benchmark rows of that variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

PAPER_NUMBERS = Path(__file__).resolve().parent.parent / "configs" / "paper_numbers.yaml"
BENCHMARK_TASK = "benchmark"  # a column filled from the benchmark rows (speed), not the metric rows


@dataclass(frozen=True)
class Column:
    name: str
    task: str  # the metric rows' task, or "benchmark"
    metric: str
    scale: float = 1.0  # ours * scale is in the paper's unit (COCO / DOTA mAP are in [0, 1] here, % there)
    unit: str = ""


@dataclass(frozen=True)
class PaperRow:
    name: str
    paper_row: str
    paper: Optional[dict[str, float]]  # None: a reference row of ours the paper does not have


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    columns: list[Column] = field(default_factory=list)
    rows: list[PaperRow] = field(default_factory=list)

    @property
    def rows_are_variants(self) -> bool:
        """Table 7 and Figure 5: the rows are acceleration variants of one fine-tuned model."""
        return any(column.task == BENCHMARK_TASK for column in self.columns)


def experiment_name(table: str, scale: str) -> str:
    """The store experiment a reproduced table's runs belong to."""
    return f"reproduce-{table}-{scale}"


def load_paper_tables(path: str | Path = PAPER_NUMBERS) -> dict[str, PaperTable]:
    """Every table of the numbers file; a malformed entry raises naming the table and the fix."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the paper's numbers from {path}: {error}") from error
    tables = {}
    for name, entry in raw.items():
        try:
            columns = [Column(column, **spec) for column, spec in entry["columns"].items()]
            rows = [PaperRow(row["name"], row["paper_row"], row.get("paper")) for row in entry["rows"]]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: table {name!r} is malformed ({error!r}); each table needs 'title', "
                             f"'columns' ({{name: {{task, metric}}}}) and 'rows' ([{{name, paper_row, paper}}])") from error
        for row in rows:
            unknown = sorted(set(row.paper or {}) - {column.name for column in columns})
            if unknown:
                raise ValueError(f"{path}: {name} row {row.name!r} gives numbers for unknown columns {unknown}")
        tables[name] = PaperTable(name, entry.get("title", name), columns, rows)
    return tables


def _row_of(params: Any) -> Optional[str]:
    reproduce = params.get("reproduce") if isinstance(params, dict) else None
    return reproduce.get("row") if isinstance(reproduce, dict) else None


def ours(table: PaperTable, runs: pd.DataFrame, metrics: pd.DataFrame,
         benchmarks: Optional[pd.DataFrame] = None) -> dict[str, dict[str, float]]:
    """``{row: {column: value in the paper's unit}}`` from the store frames of one reproduced table
    (``ResultsReader.runs / metrics / benchmarks`` of its experiment); missing values are left out.
    Final metrics only (validation split, step 0), completed runs only."""
    values: dict[str, dict[str, float]] = {row.name: {} for row in table.rows}
    completed = runs[runs["status"] == "completed"] if len(runs) else runs
    row_of_run = {int(run.run_id): _row_of(run.params) for run in completed.itertuples()}
    final = metrics[(metrics["split"] == "val") & (metrics["step"] == 0)] if len(metrics) else metrics
    final = final[final["run_id"].isin(list(row_of_run))] if len(final) else final
    for column in table.columns:
        if column.task == BENCHMARK_TASK:
            if benchmarks is None or not len(benchmarks):
                continue
            for row in table.rows:
                found = benchmarks[benchmarks["variant"] == row.name][column.metric].dropna()
                if len(found):
                    values[row.name][column.name] = float(found.iloc[-1]) * column.scale
            continue
        chosen = final[(final["task"] == column.task) & (final["name"] == column.metric)] if len(final) else final
        for row in table.rows:
            if table.rows_are_variants:
                found = chosen[chosen["variant"] == row.name]
            else:
                found = chosen[chosen["run_id"].map(row_of_run) == row.name]
            if len(found):
                values[row.name][column.name] = float(found["value"].iloc[-1]) * column.scale
    return values


def side_by_side(table: PaperTable, measured: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One line per paper row: its name, the paper's row, then ``<column> ours`` / ``<column> paper``."""
    lines = []
    for row in table.rows:
        line: dict[str, Any] = {"row": row.name, "paper row": row.paper_row}
        for column in table.columns:
            line[f"{column.name} ours"] = measured.get(row.name, {}).get(column.name, math.nan)
            line[f"{column.name} paper"] = (row.paper or {}).get(column.name, math.nan)
        lines.append(line)
    return pd.DataFrame(lines)


def reproduced_table(reader: Any, table: str, scale: str, path: str | Path = PAPER_NUMBERS) -> pd.DataFrame:
    """``side_by_side`` of ``table`` at ``scale`` read from the store through ``reader`` (a ``ResultsReader``)."""
    spec = load_paper_tables(path)[table]
    experiment = experiment_name(table, scale)
    runs = reader.runs(experiment=experiment)
    metrics = reader.metrics(experiment=experiment, completed_only=True)
    benchmarks = reader.benchmarks(experiment=experiment) if spec.rows_are_variants else None
    return side_by_side(spec, ours(spec, runs, metrics, benchmarks))
