"""run attempts (every execution of a run, with its real start and end); experiments.sweep

Revision ID: 0002_run_attempts
Revises: 0001_initial
Create Date: 2026-11-30

Each existing run becomes its one attempt (its recorded status and times).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_run_attempts"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("sweep", sa.String(length=200), server_default="", nullable=False))
        batch.create_index("ix_experiments_sweep", ["sweep"])
    op.create_table(
        "run_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('running', 'completed', 'failed')", name="ck_run_attempts_status"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_attempts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_run_attempts"),
        sa.UniqueConstraint("run_id", "started_at", name="uq_run_attempts_run_id"),
    )
    op.create_index("ix_run_attempts_run_id", "run_attempts", ["run_id"])
    op.execute(
        "INSERT INTO run_attempts (run_id, status, error, flow_run_id, started_at, finished_at, duration_s, "
        "recorded_at) SELECT id, status, error, flow_run_id, started_at, finished_at, duration_s, started_at FROM runs"
    )


def downgrade() -> None:
    op.drop_index("ix_run_attempts_run_id", table_name="run_attempts")
    op.drop_table("run_attempts")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_index("ix_experiments_sweep")
        batch.drop_column("sweep")
