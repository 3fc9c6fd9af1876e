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
    ResultsReader,
    model_family,
    open_reader,
    pareto_front,
)
from services.store.writer import ResultsWriter, open_writer

__all__ = [
    "BASELINE",
    "ResultsReader",
    "ResultsWriter",
    "StoreError",
    "StoreNotInitialisedError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "current_revision",
    "head_revision",
    "model_family",
    "open_reader",
    "open_writer",
    "pareto_front",
    "upgrade",
]
