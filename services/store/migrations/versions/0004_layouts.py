"""input size and acceleration layout of every metric and benchmark row (issue 20: a point is one configuration)

Revision ID: 0004_layouts
Revises: 0003_rotated_task
Create Date: 2026-12-03

Adds ``services.store.models.LayoutColumns`` to ``metrics`` and ``benchmarks``. Rows written before have no
layout: input size 0, the rest NULL; the dashboard pairs none of them. A metric's key gains the input size
(one variant may be evaluated at several sizes in one run). A downgrade drops the columns; it refuses a store
where one metric key holds rows of several sizes, which the old key cannot tell apart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_layouts"
down_revision: str | None = "0003_rotated_task"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = ["run_id", "task", "dataset", "split", "name", "step", "model", "variant"]
NEW_KEY = [*OLD_KEY, "input_h", "input_w"]
COLUMNS = [("grid_h", sa.Integer()), ("grid_w", sa.Integer()), ("windows_h", sa.Integer()),
           ("windows_w", sa.Integer()), ("window_h", sa.Integer()), ("window_w", sa.Integer()),
           ("gathering_tokens", sa.Integer()), ("migrated_per_layer", sa.Text()), ("tokens_left", sa.Float())]


def _add_columns(batch: object) -> None:
    for name in ("input_h", "input_w"):
        batch.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
    for name, kind in COLUMNS:
        batch.add_column(sa.Column(name, kind, nullable=True))


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        _add_columns(batch)
        batch.drop_constraint("uq_metrics_run_id", type_="unique")
        batch.create_unique_constraint("uq_metrics_run_id", NEW_KEY)
    with op.batch_alter_table("benchmarks") as batch:
        _add_columns(batch)


def downgrade() -> None:
    clashes = op.get_bind().scalar(sa.text(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY {', '.join(OLD_KEY)} HAVING COUNT(*) > 1) AS clash"))
    if clashes:
        raise RuntimeError(f"{clashes} metric keys hold rows of several input sizes, which revision 0003 cannot keep "
                           f"apart: delete the rows of all but one size first")
    for table in ("metrics", "benchmarks"):
        with op.batch_alter_table(table) as batch:
            if table == "metrics":
                batch.drop_constraint("uq_metrics_run_id", type_="unique")
                batch.create_unique_constraint("uq_metrics_run_id", OLD_KEY)
            for name in ("input_h", "input_w", *(name for name, _ in COLUMNS)):
                batch.drop_column(name)
