"""Contract sections 4 (agent tokens) and 6 (GET /v1/events/) through the API.

Every test runs on SQLite and on PostgreSQL (the `backend` fixture behind `client` and `world`).
"""
from __future__ import annotations

import datetime as dt
import json
import re

from sqlalchemy import func, select

from appliance import clock
from appliance.clock import utcnow
from appliance.models import AgentToken, Event
from appliance.security import digest
from appliance.services.automation import events as event_log
from appliance.services.identity.auth import SCOPES
from tests.helpers import assert_error, where_stored

RAW_TOKEN = re.compile(r"gent_[A-Za-z0-9_-]{44}")
TOKEN_FIELDS = {"token_id", "label", "inbox_id", "scopes", "requires_approval", "status", "created_at",
                "expires_at", "last_used_at"}
EVENT_FIELDS = {"event_id", "seq", "type", "category", "inbox_id", "resource_id", "occurred_at", "actor", "payload"}


# --- helpers -------------------------------------------------------------------------------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(client, person, inbox_id: str, scopes: list[str], **extra):
    body = {"inbox_id": inbox_id, "label": "bot", "scopes": scopes, **extra}
    return client.post("/v1/tokens/", json=body, headers=person.auth)


def created(client, person, inbox_id: str, scopes: list[str], **extra) -> dict:
    resp = create(client, person, inbox_id, scopes, **extra)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def patch(client, person, token_id: str, body: dict):
    return client.patch(f"/v1/tokens/{token_id}/", json=body, headers=person.auth)


def listing(client, person, **query) -> list[dict]:
    resp = client.get("/v1/tokens/", headers=person.auth, query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["results"]


def events(client, auth: dict, **query) -> list[dict]:
    resp = client.get("/v1/events/", headers=auth, query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"results", "cursor"}
    for event in body["results"]:
        assert set(event) == EVENT_FIELDS
    return body["results"]


def me_status(client, raw: str) -> int:
    return client.get("/v1/users/me/", headers=bearer(raw)).status_code


def token_count(store) -> int:
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(AgentToken))


# --- create --------------------------------------------------------------------------------
def test_create_answers_the_raw_token_once(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    resp = create(client, owner, inbox_id, ["email:send", "email:read", "email:read"],
                  requires_approval=["email:send"], label="Support bot")
    assert resp.status_code == 201
    body = resp.get_json()
    assert set(body) == TOKEN_FIELDS | {"token"}
    assert RAW_TOKEN.fullmatch(body["token"]), body["token"]
    assert body["token_id"].startswith("tok_") and body["inbox_id"] == inbox_id
    assert body["label"] == "Support bot" and body["status"] == "active"
    assert sorted(body["scopes"]) == ["email:read", "email:send"]
    assert body["requires_approval"] == ["email:send"]
    assert body["expires_at"] is None and body["last_used_at"] is None
    created_at = dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert abs(created_at - utcnow()) < dt.timedelta(minutes=1)

    me = client.get("/v1/users/me/", headers=bearer(body["token"]))
    assert me.status_code == 200 and me.get_json()["token_id"] == body["token_id"]

    resp = client.get("/v1/tokens/", headers=owner.auth)
    assert resp.status_code == 200
    assert body["token"] not in resp.get_data(as_text=True)
    (listed,) = resp.get_json()["results"]
    assert set(listed) == TOKEN_FIELDS
    assert listed["token_id"] == body["token_id"] and listed["status"] == "active"
    assert listed["last_used_at"] is not None  # the call to /v1/users/me/ above


def test_tokens_are_unique_and_stored_only_as_hashes(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    raws = {created(client, owner, inbox_id, ["email:read"])["token"] for _ in range(3)}
    assert len(raws) == 3
    rotated = patch(client, owner, listing(client, owner)[0]["token_id"], {"action": "rotate"}).get_json()["token"]
    for raw in raws | {rotated}:
        assert where_stored(store, raw) == set(), raw
        assert where_stored(store, raw[len("gent_"):]) == set(), raw
    assert ("agent_tokens", "token_hash") in where_stored(store, digest(rotated))


def test_raw_token_is_not_stored_even_with_an_idempotency_key(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    resp = client.post("/v1/tokens/", json={"inbox_id": inbox_id, "label": "x", "scopes": ["email:read"]},
                       headers=owner.auth | {"Idempotency-Key": "create-1"})
    assert resp.status_code == 201
    assert where_stored(store, resp.get_json()["token"]) == set()


def test_unknown_scope_is_refused_with_the_valid_ones(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    err = assert_error(create(client, owner, inbox_id, ["email:read", "email:admin"]), 400, "validation_error",
                       field="scopes")
    assert "email:admin" in err["message"]
    for scope in SCOPES:
        assert scope in err["fix"], scope
    err = assert_error(create(client, owner, inbox_id, ["email:read"], requires_approval=["root"]),
                       400, "validation_error", field="requires_approval")
    assert all(scope in err["fix"] for scope in SCOPES)
    assert_error(create(client, owner, inbox_id, []), 400, "validation_error", field="scopes")
    assert_error(create(client, owner, inbox_id, ["email:read"], requires_approval=["email:send"]),
                 400, "validation_error", field="requires_approval")
    assert_error(create(client, owner, inbox_id, "email:read"), 400, "validation_error", field="scopes")
    assert_error(create(client, owner, inbox_id, ["email:read"], label="a\r\nb"), 400, "validation_error",
                 field="label")
    assert_error(create(client, owner, inbox_id, ["email:read"], owner="me"), 400, "validation_error", field="owner")
    assert_error(client.post("/v1/tokens/", json={"label": "x", "scopes": ["email:read"]}, headers=owner.auth),
                 400, "validation_error", field="inbox_id")
    assert token_count(store) == 0
    with store.session() as db:  # a refused call writes no event either
        assert db.scalar(select(func.count()).select_from(Event).where(Event.type.like("token.%"))) == 0


def test_expires_at_must_be_in_the_future_and_expired_tokens_fail(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    past = (utcnow() - dt.timedelta(minutes=1)).isoformat()
    assert_error(create(client, owner, inbox_id, ["email:read"], expires_at=past), 400, "validation_error",
                 field="expires_at")
    assert_error(create(client, owner, inbox_id, ["email:read"], expires_at="2999-01-01T00:00:00"),
                 400, "validation_error", field="expires_at")
    assert_error(create(client, owner, inbox_id, ["email:read"], expires_at="tomorrow"), 400, "validation_error",
                 field="expires_at")
    expires = (utcnow() + dt.timedelta(hours=2)).replace(microsecond=0)
    body = created(client, owner, inbox_id, ["email:read"], expires_at=expires.isoformat())
    assert body["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert me_status(client, body["token"]) == 200
    clock.advance(dt.timedelta(hours=1, minutes=59))
    assert me_status(client, body["token"]) == 200
    clock.advance(dt.timedelta(minutes=1, seconds=1))
    assert_error(client.get("/v1/users/me/", headers=bearer(body["token"])), 401, "token_expired")
    assert_error(client.get("/v1/events/", headers=bearer(body["token"])), 401, "token_expired")


# --- who may manage tokens -----------------------------------------------------------------
def test_another_tenants_inbox_and_tokens_are_not_found(client, world):
    owner, stranger = world.owner(), world.owner()
    inbox_id, their_inbox = world.inbox(owner), world.inbox(stranger)
    theirs = created(client, stranger, their_inbox, ["email:read"])
    assert_error(create(client, owner, their_inbox, ["email:read"]), 404, "not_found")
    assert_error(create(client, owner, "inb_doesnotexist", ["email:read"]), 404, "not_found")
    assert_error(patch(client, owner, theirs["token_id"], {"action": "pause"}), 404, "not_found")
    assert_error(patch(client, owner, theirs["token_id"], {"scopes": ["email:read"]}), 404, "not_found")
    assert_error(client.delete(f"/v1/tokens/{theirs['token_id']}/", headers=owner.auth), 404, "not_found")
    assert_error(client.get("/v1/tokens/", headers=owner.auth, query_string={"inbox_id": their_inbox}),
                 404, "not_found")
    assert_error(patch(client, owner, "tok_doesnotexist", {"action": "pause"}), 404, "not_found")
    mine = created(client, owner, inbox_id, ["email:read"])
    assert [t["token_id"] for t in listing(client, owner)] == [mine["token_id"]]
    assert [t["token_id"] for t in listing(client, stranger)] == [theirs["token_id"]]
    # Their token was untouched by all of this.
    assert me_status(client, theirs["token"]) == 200
    assert listing(client, stranger)[0]["status"] == "active"


def test_members_may_not_manage_tokens_but_admins_may(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    existing = created(client, owner, inbox_id, ["email:read"])
    member, admin = world.member(owner, "member"), world.member(owner, "admin")
    assert_error(create(client, member, inbox_id, ["email:read"]), 403, "forbidden")
    assert_error(client.get("/v1/tokens/", headers=member.auth), 403, "forbidden")
    assert_error(patch(client, member, existing["token_id"], {"action": "pause"}), 403, "forbidden")
    assert_error(client.delete(f"/v1/tokens/{existing['token_id']}/", headers=member.auth), 403, "forbidden")
    assert me_status(client, existing["token"]) == 200
    assert created(client, admin, inbox_id, ["email:send"])["inbox_id"] == inbox_id
    assert len(listing(client, admin)) == 2


def test_agent_tokens_cannot_manage_tokens(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, list(SCOPES))
    body = {"inbox_id": inbox_id, "label": "x", "scopes": ["email:read"]}
    assert_error(client.post("/v1/tokens/", json=body, headers=agent.auth), 403, "session_required")
    assert_error(client.get("/v1/tokens/", headers=agent.auth), 403, "session_required")
    assert_error(client.patch(f"/v1/tokens/{agent.token_id}/", json={"action": "rotate"}, headers=agent.auth),
                 403, "session_required")
    assert_error(client.delete(f"/v1/tokens/{agent.token_id}/", headers=agent.auth), 403, "session_required")
    assert_error(client.get("/v1/tokens/"), 401, "unauthenticated")
    assert_error(client.post("/v1/tokens/", json=body), 401, "unauthenticated")
    assert me_status(client, agent.raw) == 200


# --- list ----------------------------------------------------------------------------------
def test_list_filters_by_inbox_and_pages(client, world):
    owner = world.owner()
    first_inbox, second_inbox = world.inbox(owner), world.inbox(owner)
    ids = [created(client, owner, first_inbox, ["email:read"])["token_id"] for _ in range(3)]
    other = created(client, owner, second_inbox, ["email:send"])["token_id"]
    assert [t["token_id"] for t in listing(client, owner, inbox_id=first_inbox)] == ids
    assert [t["token_id"] for t in listing(client, owner, inbox_id=second_inbox)] == [other]
    seen, cursor = [], None
    for _ in range(10):
        query = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        resp = client.get("/v1/tokens/", headers=owner.auth, query_string=query)
        assert resp.status_code == 200
        page = resp.get_json()
        assert len(page["results"]) == 1
        seen.append(page["results"][0]["token_id"])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids + [other])
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "many"}, {"secret": "1"}):
        assert_error(client.get("/v1/tokens/", headers=owner.auth, query_string=bad), 400, "validation_error")


# --- pause, resume, rotate, narrow, revoke --------------------------------------------------
def test_pause_and_resume(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    token = created(client, owner, inbox_id, ["email:read"])
    resp = patch(client, owner, token["token_id"], {"action": "pause"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == TOKEN_FIELDS and body["status"] == "paused"
    for path in ("/v1/users/me/", "/v1/events/"):
        err = assert_error(client.get(path, headers=bearer(token["token"])), 403, "token_paused")
        assert err["fix"]
    assert listing(client, owner)[0]["status"] == "paused"
    resp = patch(client, owner, token["token_id"], {"action": "resume"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "active"
    assert "token" not in resp.get_json()
    assert me_status(client, token["token"]) == 200
    assert client.get("/v1/events/", headers=bearer(token["token"])).status_code == 200


def test_rotate_replaces_the_secret(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    token = created(client, owner, inbox_id, ["email:read"])
    resp = patch(client, owner, token["token_id"], {"action": "rotate"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == TOKEN_FIELDS | {"token"}
    assert RAW_TOKEN.fullmatch(body["token"]) and body["token"] != token["token"]
    assert body["token_id"] == token["token_id"] and body["scopes"] == token["scopes"]
    assert_error(client.get("/v1/users/me/", headers=bearer(token["token"])), 401, "unauthenticated")
    me = client.get("/v1/users/me/", headers=bearer(body["token"]))
    assert me.status_code == 200 and me.get_json()["token_id"] == token["token_id"]
    listed = client.get("/v1/tokens/", headers=owner.auth)
    assert body["token"] not in listed.get_data(as_text=True)
    assert "token" not in listed.get_json()["results"][0]


def test_rotating_a_paused_token_keeps_it_paused(client, world):
    owner = world.owner()
    token = created(client, owner, world.inbox(owner), ["email:read"])
    patch(client, owner, token["token_id"], {"action": "pause"})
    rotated = patch(client, owner, token["token_id"], {"action": "rotate"}).get_json()
    assert rotated["status"] == "paused"
    assert_error(client.get("/v1/users/me/", headers=bearer(rotated["token"])), 403, "token_paused")


def test_scopes_can_be_narrowed_but_never_widened(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    token = created(client, owner, inbox_id, ["email:read", "email:send", "labels:read"],
                    requires_approval=["email:send"])
    resp = patch(client, owner, token["token_id"], {"scopes": ["email:read", "email:send"]})
    assert resp.status_code == 200
    body = resp.get_json()
    assert sorted(body["scopes"]) == ["email:read", "email:send"] and body["requires_approval"] == ["email:send"]
    assert "token" not in body
    assert client.get("/v1/events/", headers=bearer(token["token"])).status_code == 200

    resp = patch(client, owner, token["token_id"], {"scopes": ["email:send"]})
    assert resp.status_code == 200 and resp.get_json()["scopes"] == ["email:send"]
    assert resp.get_json()["requires_approval"] == ["email:send"]
    err = assert_error(client.get("/v1/events/", headers=bearer(token["token"])), 403, "insufficient_scope")
    assert "email:read" in err["fix"]
    me = client.get("/v1/users/me/", headers=bearer(token["token"])).get_json()
    assert me["scopes"] == ["email:send"]

    for wider in (["email:send", "email:read"], ["email:read"], ["email:send", "calendar:write"]):
        assert_error(patch(client, owner, token["token_id"], {"scopes": wider}), 400, "validation_error",
                     field="scopes")
    assert_error(patch(client, owner, token["token_id"], {"scopes": []}), 400, "validation_error", field="scopes")
    assert_error(patch(client, owner, token["token_id"], {"scopes": ["nope:read"]}), 400, "validation_error",
                 field="scopes")
    assert listing(client, owner)[0]["scopes"] == ["email:send"]


def test_patch_needs_exactly_one_known_change(client, world):
    owner = world.owner()
    token = created(client, owner, world.inbox(owner), ["email:read"])
    assert_error(patch(client, owner, token["token_id"], {}), 400, "validation_error")
    assert_error(patch(client, owner, token["token_id"], {"action": "pause", "scopes": ["email:read"]}),
                 400, "validation_error")
    assert_error(patch(client, owner, token["token_id"], {"action": "delete"}), 400, "validation_error",
                 field="action")
    assert_error(patch(client, owner, token["token_id"], {"status": "active"}), 400, "validation_error",
                 field="status")
    assert listing(client, owner)[0]["status"] == "active"


def test_revoke_is_effective_on_the_very_next_call(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    token = created(client, owner, inbox_id, ["email:read"])
    keep = created(client, owner, inbox_id, ["email:read"])
    assert me_status(client, token["token"]) == 200
    resp = client.delete(f"/v1/tokens/{token['token_id']}/", headers=owner.auth)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_error(client.get("/v1/users/me/", headers=bearer(token["token"])), 401, "token_revoked")
    assert_error(client.get("/v1/events/", headers=bearer(token["token"])), 401, "token_revoked")
    assert [t["token_id"] for t in listing(client, owner)] == [keep["token_id"]]
    assert_error(client.delete(f"/v1/tokens/{token['token_id']}/", headers=owner.auth), 404, "not_found")
    assert_error(patch(client, owner, token["token_id"], {"action": "resume"}), 404, "not_found")
    assert_error(client.get("/v1/users/me/", headers=bearer(token["token"])), 401, "token_revoked")
    assert me_status(client, keep["token"]) == 200
    with store.session() as db:
        row = db.get(AgentToken, token["token_id"])
        assert row.status == "revoked" and row.revoked_at is not None


# --- idempotency ---------------------------------------------------------------------------
def test_idempotency_key_replays_the_first_answer(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    body = {"inbox_id": inbox_id, "label": "once", "scopes": ["email:read"]}
    key = {"Idempotency-Key": "create-once-1"}
    first = client.post("/v1/tokens/", json=body, headers=owner.auth | key)
    again = client.post("/v1/tokens/", json=body, headers=owner.auth | key)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert token_count(store) == 1
    assert [e["type"] for e in events(client, owner.auth, inbox_id=inbox_id)] == ["inbox.created", "token.created"]

    changed = client.post("/v1/tokens/", json=body | {"label": "twice"}, headers=owner.auth | key)
    assert_error(changed, 409, "idempotency_conflict")
    assert token_count(store) == 1

    # Another key is another request; another caller's key is not ours.
    assert client.post("/v1/tokens/", json=body, headers=owner.auth | {"Idempotency-Key": "create-once-2"}
                       ).status_code == 201
    assert token_count(store) == 2
    admin = world.member(owner, "admin")
    theirs = client.post("/v1/tokens/", json=body, headers=admin.auth | key)
    assert theirs.status_code == 201
    assert theirs.get_json()["token_id"] != first.get_json()["token_id"]
    assert theirs.get_json()["token"] != first.get_json()["token"]
    assert token_count(store) == 3


def test_idempotency_keys_expire_after_24_hours(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    body = {"inbox_id": inbox_id, "label": "once", "scopes": ["email:read"]}
    key = {"Idempotency-Key": "daily"}
    assert client.post("/v1/tokens/", json=body, headers=owner.auth | key).status_code == 201
    clock.advance(dt.timedelta(hours=24, minutes=1))
    access = client.post("/auth/refresh/", json={"refresh_token": owner.refresh_token}).get_json()["access_token"]
    later = client.post("/v1/tokens/", json=body | {"label": "next day"}, headers=bearer(access) | key)
    assert later.status_code == 201 and later.get_json()["label"] == "next day"
    assert token_count(store) == 2


def test_a_refused_request_is_not_remembered_by_its_key(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    key = {"Idempotency-Key": "retry-me"}
    bad = {"inbox_id": inbox_id, "label": "x", "scopes": ["bogus"]}
    assert_error(client.post("/v1/tokens/", json=bad, headers=owner.auth | key), 400, "validation_error")
    assert_error(client.post("/v1/tokens/", json=bad, headers=owner.auth | key), 400, "validation_error")
    assert token_count(store) == 0


# --- events (section 6) ---------------------------------------------------------------------
def test_token_events_are_listed_for_the_owner_and_the_agent(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read"])  # made through the service: token.created too
    token = created(client, owner, inbox_id, ["email:send"], label="worker")
    for change in ({"action": "pause"}, {"action": "resume"}, {"action": "rotate"}):
        assert patch(client, owner, token["token_id"], change).status_code == 200
    assert client.delete(f"/v1/tokens/{token['token_id']}/", headers=owner.auth).status_code == 204

    expected = [("inbox.created", inbox_id), ("token.created", reader.token_id), ("token.created", token["token_id"]),
                ("token.paused", token["token_id"]), ("token.resumed", token["token_id"]),
                ("token.rotated", token["token_id"]), ("token.revoked", token["token_id"])]
    as_owner = events(client, owner.auth, inbox_id=inbox_id)
    assert [(e["type"], e["resource_id"]) for e in as_owner] == expected
    assert all(e["inbox_id"] == inbox_id and e["event_id"].startswith("evt_") for e in as_owner)
    assert as_owner[2]["payload"] == {"label": "worker", "scopes": ["email:send"]}
    assert token["token"] not in json.dumps(as_owner)
    for event in as_owner:
        occurred = dt.datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        assert abs(occurred - utcnow()) < dt.timedelta(minutes=1)

    as_agent = events(client, reader.auth)
    assert as_agent == as_owner
    assert events(client, reader.auth, inbox_id=inbox_id) == as_owner


def test_events_filters_and_cursor(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read"])
    token = created(client, owner, inbox_id, ["email:send"])
    client.delete(f"/v1/tokens/{token['token_id']}/", headers=owner.auth)
    everything = events(client, reader.auth)
    assert [e["type"] for e in everything] == ["inbox.created", "token.created", "token.created", "token.revoked"]

    revoked = events(client, reader.auth, types="token.revoked")
    assert [(e["type"], e["resource_id"]) for e in revoked] == [("token.revoked", token["token_id"])]
    both = events(client, reader.auth, types="token.revoked,token.created")
    assert both == everything[1:]
    assert events(client, reader.auth, types="message.received") == []

    assert events(client, reader.auth, after=everything[0]["event_id"]) == everything[1:]
    assert events(client, reader.auth, after=everything[-1]["event_id"]) == []

    seen, cursor = [], None
    for _ in range(10):
        query = {"limit": 1} | ({"after": cursor} if cursor else {})
        resp = client.get("/v1/events/", headers=reader.auth, query_string=query)
        assert resp.status_code == 200
        page = resp.get_json()
        seen += page["results"]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == everything
    assert_error(client.get("/v1/events/", headers=reader.auth, query_string={"limit": 500}), 400,
                 "validation_error", field="limit")


def test_an_agent_sees_only_its_own_inbox_events(client, world):
    owner, stranger = world.owner(), world.owner()
    inbox_a, inbox_b = world.inbox(owner), world.inbox(owner)
    their_inbox = world.inbox(stranger)
    agent_a = world.agent(owner, inbox_a, ["email:read"])
    agent_b = world.agent(owner, inbox_b, ["email:read"])
    in_b = created(client, owner, inbox_b, ["email:send"])
    client.delete(f"/v1/tokens/{in_b['token_id']}/", headers=owner.auth)
    created(client, stranger, their_inbox, ["email:read"])

    seen_by_a = events(client, agent_a.auth)
    assert [(e["type"], e["resource_id"]) for e in seen_by_a] == [("inbox.created", inbox_a),
                                                                   ("token.created", agent_a.token_id)]
    assert {e["inbox_id"] for e in seen_by_a} == {inbox_a}
    seen_by_b = events(client, agent_b.auth)
    assert [e["resource_id"] for e in seen_by_b] == [inbox_b, agent_b.token_id, in_b["token_id"], in_b["token_id"]]

    for other in (inbox_b, their_inbox, "inb_doesnotexist"):
        assert_error(client.get("/v1/events/", headers=agent_a.auth, query_string={"inbox_id": other}),
                     403, "inbox_mismatch", field="inbox_id")


def test_events_need_email_read_or_a_manager_session(client, world):
    owner, stranger = world.owner(), world.owner()
    inbox_id, their_inbox = world.inbox(owner), world.inbox(stranger)
    sender = world.agent(owner, inbox_id, ["email:send"])
    err = assert_error(client.get("/v1/events/", headers=sender.auth), 403, "insufficient_scope")
    assert "email:read" in err["fix"]
    assert_error(client.get("/v1/events/"), 401, "unauthenticated")
    assert_error(client.get("/v1/events/", headers=owner.auth), 400, "validation_error", field="inbox_id")
    assert_error(client.get("/v1/events/", headers=owner.auth, query_string={"inbox_id": their_inbox}),
                 404, "not_found")
    member = world.member(owner, "member")
    # A member uses only the inboxes granted to them (issue 14.15): any other is not found.
    assert_error(client.get("/v1/events/", headers=member.auth, query_string={"inbox_id": inbox_id}),
                 404, "not_found")
    admin = world.member(owner, "admin")
    assert [e["resource_id"] for e in events(client, admin.auth, inbox_id=inbox_id)] == [inbox_id, sender.token_id]


def test_events_written_together_list_in_the_order_written(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read"])
    with store.session() as db:
        written = [event_log.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                  resource_id=f"msg_{i:026d}").id for i in range(50)]
    listed = [e["event_id"] for e in events(client, reader.auth, types="message.received", limit=200)]
    assert listed == written


def test_a_cursor_that_is_not_an_id_is_refused(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    for path, params in (("/v1/tokens/", {"cursor": "nonsense"}), ("/v1/inboxes/", {"cursor": "x\r\ny"}),
                         ("/v1/events/", {"after": "evt_short", "inbox_id": inbox_id})):
        resp = client.get(path, headers=owner.auth, query_string=params)
        assert_error(resp, 400, "validation_error", field=next(k for k in params if k != "inbox_id"))
