"""The results store's tables: experiments, runs (with their attempts), metrics, benchmarks and artifacts.

Natural keys make every write idempotent: an experiment by its name, a run by its run key,
an attempt by (run, start time), a metric by (run, task, dataset, split, name, step, model, variant, input size), a
benchmark row by (run, model, variant, resolution, batch size, device, dtype), an artifact by its URL. Metric and
benchmark rows of one acceleration variant carry the layout it ran with (``LayoutColumns``: the fields of
``itpn.records.TokenLayout``; input size 0 and the rest NULL for a row without one).
Key columns are NOT NULL (``''`` stands for "not applicable") because unique constraints
treat NULLs as distinct in both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("running", "completed", "failed")

# Deterministic constraint names, so Alembic migrations name them the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    sweep: Mapped[str] = mapped_column(String(200), default="", server_default="", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="experiment")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'completed', 'failed')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    run_key: Mapped[str] = mapped_column(String(300), unique=True)
    flow_name: Mapped[str] = mapped_column(String(200), default="")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)

    experiment: Mapped[Experiment] = relationship(back_populates="runs")
    history: Mapped[list[RunAttempt]] = relationship(back_populates="run", order_by="RunAttempt.started_at")


class RunAttempt(Base):
    """One execution of a run's work: when it really ran, how it ended. A run's own status, times
    and result rows are those of its newest attempt (by start time); older ones stay as history."""

    __tablename__ = "run_attempts"
    __table_args__ = (
        UniqueConstraint("run_id", "started_at"),
        CheckConstraint("status IN ('running', 'completed', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="history")


class LayoutColumns:
    """The input size and acceleration layout of a row (``itpn.records.TokenLayout``, one column a field)."""

    input_h: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    input_w: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    grid_h: Mapped[int | None] = mapped_column(Integer)
    grid_w: Mapped[int | None] = mapped_column(Integer)
    windows_h: Mapped[int | None] = mapped_column(Integer)
    windows_w: Mapped[int | None] = mapped_column(Integer)
    window_h: Mapped[int | None] = mapped_column(Integer)
    window_w: Mapped[int | None] = mapped_column(Integer)
    gathering_tokens: Mapped[int | None] = mapped_column(Integer)
    migrated_per_layer: Mapped[str | None] = mapped_column(Text)
    tokens_left: Mapped[float | None] = mapped_column(Float)


class Metric(LayoutColumns, Base):
    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "task", "dataset", "split", "name", "step", "model", "variant", "input_h",
                         "input_w"),
        Index("ix_metrics_lookup", "task", "model", "variant", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128), default="")
    variant: Mapped[str] = mapped_column(String(128), default="")
    value: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Benchmark(LayoutColumns, Base):
    __tablename__ = "benchmarks"
    __table_args__ = (
        UniqueConstraint("run_id", "model", "variant", "resolution", "batch_size", "device", "dtype"),
        Index("ix_benchmarks_lookup", "model", "resolution", "batch_size", "device"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(128))
    resolution: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(128))
    dtype: Mapped[str] = mapped_column(String(32), default="float32")
    images_per_s: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[float | None] = mapped_column(Float)
    gflops: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(1000), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
