"""Alembic environment: runs on the connection `alinea.feedback.db` passes in `config.attributes["connection"]`."""

from __future__ import annotations

from alembic import context

from alinea.feedback.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through alinea.feedback.db.upgrade/downgrade, which pass a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
