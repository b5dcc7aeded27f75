"""Alembic environment: runs on the connection handed over by appliance.db.migrate."""
from alembic import context

from appliance.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `gentbox migrate` (appliance.db.migrate)")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
