"""Migration 0023 (distribution lists) goes down and up again on both backends (the other tests
of the area run on the tables it makes)."""
from __future__ import annotations

from sqlalchemy import inspect

from tests.helpers import alembic


def test_migration_0023_downgrades_and_upgrades(store) -> None:
    alembic(store, "downgrade", "0022_labels_team")
    tables = set(inspect(store.engine).get_table_names())
    assert not {"distribution_lists", "distribution_list_members"} & tables
    alembic(store, "upgrade", "head")
    inspector = inspect(store.engine)
    assert {"distribution_lists", "distribution_list_members"} <= set(inspector.get_table_names())
    assert any(i["name"] == "uq_distribution_lists_address" and i["unique"]
               for i in inspector.get_indexes("distribution_lists"))
