"""Issue 20: migration 0031 (workflows, their runs and queued webhooks) goes down and up again on both backends."""
from sqlalchemy import inspect
from tests.helpers import alembic

def test_down_up(store):
    alembic(store, "downgrade", "0030_files")
    assert "workflows" not in inspect(store.engine).get_table_names()
    alembic(store, "upgrade", "head")
    assert {"workflows", "workflow_runs", "workflow_deliveries"} <= set(inspect(store.engine).get_table_names())
