"""Alembic environment: runs on the connection that `upgrade_to_head` hands over (no ini file)."""

from alembic import context

from engine.data.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
