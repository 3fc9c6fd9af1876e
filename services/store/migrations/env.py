"""Alembic environment for the results store.

Migrations run only through ``services.store.upgrade(url)`` (CLI: ``itpn store upgrade``),
which hands over a connection already inside the transaction that holds the write lock,
so concurrent upgrades of one store run one after another.
"""

from alembic import context

from services.store.models import Base

if context.is_offline_mode():
    raise RuntimeError("the results store has no offline (--sql) migrations; use services.store.upgrade(url)")

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the results-store migrations with services.store.upgrade(url) or `itpn store upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
