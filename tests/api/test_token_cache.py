"""Issue 26 point 3: each API process caches agent tokens, and still sees every change on the very
next call made through ANOTHER process (two apps, two stores, two caches, one database).

Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from appliance import clock
from appliance.services.identity import inboxes
from appliance.services.identity.auth import authenticate
from tests.helpers import assert_error
from tests.world import World

ME = "/v1/users/me/"


@pytest.fixture
def two_apps(make_app, settings):
    """Two API processes' worth of state on one database: `a` changes tokens, `b` serves the agent."""
    a, b = make_app(settings), make_app(settings)
    return a.test_client(), b.test_client()


@pytest.fixture
def setup(two_apps):
    a, b = two_apps
    world = World(a.application.extensions["gentbox"], a.application.extensions["gentbox"].settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read", "email:send"])
    for _ in range(2):  # b resolves the token once, then serves it from its cache
        assert b.get(ME, headers=agent.auth).status_code == 200
    return a, b, world, owner, agent


def _token_reads(client) -> list[str]:
    """Record the statements of `client`'s store that read the agent_tokens table."""
    seen: list[str] = []
    engine = client.application.extensions["gentbox"].read_engine

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn, cursor, statement, *args):  # noqa: ANN001, ANN202
        if "FROM agent_tokens" in statement:
            seen.append(statement)
    return seen


def test_a_cached_token_is_not_read_again(setup):
    _, b, _, _, agent = setup
    reads = _token_reads(b)
    for _ in range(3):
        resp = b.get(ME, headers=agent.auth)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.get_json()["scopes"] == ["email:read", "email:send"]
    assert reads == []


def test_revocation_through_another_process_is_seen_on_the_next_call(setup):
    a, b, _, owner, agent = setup
    assert a.delete(f"/v1/tokens/{agent.token_id}/", headers=owner.auth).status_code == 204
    assert_error(b.get(ME, headers=agent.auth), 401, "token_revoked")
    assert_error(b.get("/v1/messages/", headers=agent.auth), 401, "token_revoked")


def test_pause_and_resume_through_another_process(setup):
    a, b, _, owner, agent = setup
    resp = a.patch(f"/v1/tokens/{agent.token_id}/", json={"action": "pause"}, headers=owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_error(b.get(ME, headers=agent.auth), 403, "token_paused")
    assert a.patch(f"/v1/tokens/{agent.token_id}/", json={"action": "resume"}, headers=owner.auth).status_code == 200
    assert b.get(ME, headers=agent.auth).status_code == 200


def test_narrowing_through_another_process(setup):
    a, b, _, owner, agent = setup
    assert b.get("/v1/messages/", headers=agent.auth).status_code == 200
    resp = a.patch(f"/v1/tokens/{agent.token_id}/", json={"scopes": ["email:send"]}, headers=owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_error(b.get("/v1/messages/", headers=agent.auth), 403, "insufficient_scope")
    assert b.get(ME, headers=agent.auth).get_json()["scopes"] == ["email:send"]


def test_rotation_through_another_process(setup):
    a, b, _, owner, agent = setup
    resp = a.patch(f"/v1/tokens/{agent.token_id}/", json={"action": "rotate"}, headers=owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_error(b.get(ME, headers=agent.auth), 401, "unauthenticated")
    assert b.get(ME, headers={"Authorization": f"Bearer {resp.get_json()['token']}"}).status_code == 200


def test_inbox_deletion_by_the_service_revokes_in_every_process(setup):
    """A bulk UPDATE outside the token service (the inbox's deletion) invalidates too: the
    database's triggers bump the generation, not the code path."""
    _, b, world, owner, agent = setup
    with world.store.session() as db:
        inboxes.delete_inbox(db, authenticate(db, owner.access_token), agent.inbox_id)
    assert_error(b.get(ME, headers=agent.auth), 401, "token_revoked")


def test_expiry_is_checked_on_every_call_of_a_cached_token(two_apps):
    a, b = two_apps
    world = World(a.application.extensions["gentbox"], a.application.extensions["gentbox"].settings)
    owner = world.owner()
    expires = clock.utcnow() + dt.timedelta(hours=1)
    agent = world.agent(owner, world.inbox(owner), ["email:read"], expires_at=expires)
    assert b.get(ME, headers=agent.auth).status_code == 200
    clock.advance(dt.timedelta(hours=1, seconds=1))
    assert_error(b.get(ME, headers=agent.auth), 401, "token_expired")
