"""Migration 0013_sign_in_hardening on a store with live sessions: each existing session becomes a
family of its own, so its refresh token rotates and a reuse revokes it; the migration goes down
and up again on both backends."""
from __future__ import annotations

from sqlalchemy import inspect, select

from appliance.models import UserSession
from tests.helpers import alembic, assert_error

BEFORE = "0012_inbound_limits"


def test_existing_sessions_become_families_of_their_own(client, world, store):
    owner = world.owner()
    alembic(store, "downgrade", BEFORE)
    assert "family_id" not in {c["name"] for c in inspect(store.engine).get_columns("user_sessions")}
    alembic(store, "upgrade", "head")
    with store.session() as db:
        rows = db.scalars(select(UserSession)).all()
        assert rows and all(row.family_id == row.id and row.rotated_at is None for row in rows)
    new = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}).get_json()
    assert client.get("/v1/users/me/", headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 200
    assert_error(client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}), 401, "token_revoked")
    assert_error(client.post("/auth/refresh/", json={"refresh_token": new["refresh_token"]}), 401, "token_revoked")
