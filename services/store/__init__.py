"""The results store: experiments, runs, metrics, benchmarks and artifacts in SQL.

SQLite in the state directory by default (WAL, safe with several writer processes),
PostgreSQL by URL. Flows write through ``open_writer``; the dashboard and the CLI read
through ``open_reader``; ``upgrade`` runs the Alembic migrations.
"""

from services.store.engine import (
    StoreError,
    StoreNotInitialisedError,
    StoreSchemaError,
    StoreUnavailableError,
)
from services.store.migrate import current_revision, head_revision, upgrade
from services.store.queries import (
    BASELINE,
    MAIN_METRICS,
    ResultsReader,
    model_family,
    model_size,
    open_reader,
    pareto_front,
)
from services.store.writer import BenchmarkRow, MetricRow, ResultsWriter, open_writer, read_metrics_jsonl

__all__ = [
    "BASELINE",
    "MAIN_METRICS",
    "BenchmarkRow",
    "MetricRow",
    "ResultsReader",
    "ResultsWriter",
    "StoreError",
    "StoreNotInitialisedError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "current_revision",
    "head_revision",
    "model_family",
    "model_size",
    "open_reader",
    "open_writer",
    "pareto_front",
    "read_metrics_jsonl",
    "upgrade",
]
