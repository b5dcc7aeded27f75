"""Migration 0035 (issue 23) down and up again on both backends: the compliance tables go and
come back, and after the downgrade the audit triggers refuse every DELETE again, even under a
prune mark (the pruning door is 0035's alone)."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from appliance.services.governance import audit
from tests.helpers import alembic

TABLES = {"compliance_exports", "compliance_deletions", "audit_prunes", "retention_policies"}


def _entry(store, settings) -> None:
    with store.session() as db:
        audit.record(db, settings.secret_key, action="test.entry", actor=audit.Actor("system", "system:test"),
                     tenant_id=None, edge="cli")


def test_down_and_up_again(store, settings):
    _entry(store, settings)
    alembic(store, "downgrade", "0034_activity")
    assert not TABLES & set(inspect(store.engine).get_table_names())
    with store.session() as db:
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("DELETE FROM audit_entries"))
    alembic(store, "upgrade", "head")
    assert TABLES <= set(inspect(store.engine).get_table_names())
    with store.session() as db:  # without a mark: refused; under one: the pruning door
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("DELETE FROM audit_entries"))
    with store.session() as db:
        db.execute(text("INSERT INTO audit_prunes (chain, through_seq, at) VALUES ('box', 1, CURRENT_TIMESTAMP)"))
        assert db.execute(text("DELETE FROM audit_entries WHERE chain = 'box' AND seq = 1")).rowcount == 1
        db.rollback()
