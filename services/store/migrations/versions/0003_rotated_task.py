"""the rotated-detection task is called ``rotated`` (the name of its parameters section and stage)

Revision ID: 0003_rotated_task
Revises: 0002_run_attempts
Create Date: 2026-12-01

Metric rows written as task ``rotated_detection`` become ``rotated``; a downgrade names them back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_rotated_task"
down_revision: str | None = "0002_run_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAME = sa.text("UPDATE metrics SET task = :new WHERE task = :old")


def upgrade() -> None:
    op.get_bind().execute(RENAME, {"old": "rotated_detection", "new": "rotated"})


def downgrade() -> None:
    op.get_bind().execute(RENAME, {"old": "rotated", "new": "rotated_detection"})
