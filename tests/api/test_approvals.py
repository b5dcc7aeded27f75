"""Issue 8, approvals through the real Flask app: a token whose requires_approval covers
email:send has its sends held (202), and only a different principal may let them go.

Held mail is delivered by the real Worker to inboxes hosted here (local delivery); delivery to a
remote MX, byte for byte, and concurrent approvals are in tests/integration/test_approvals_delivery.py.
Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from appliance import clock
from appliance.errors import ForbiddenError, NotFoundError
from appliance.models import Approval, OutboundQueue
from appliance.services.governance import approvals
from appliance.services.identity.auth import authenticate
from tests.api.test_messages import full, listed
from tests.api.test_send import Mailbox, event_list, raw_of, receiving_box, send, sending_box
from tests.helpers import assert_error
from tests.world import Agent

SIMPLE = {"to": [{"email": "bob@beta.test"}], "subject": "Quarterly numbers",
          "text_body": "Hello Bob,\n\nThe numbers are up.\nSee you.\n"}
APPROVAL_FIELDS = {"approval_id", "inbox_id", "action_type", "token_label", "summary", "status", "queued_at",
                   "expires_at", "decided_by", "decided_at"}
DAY = dt.timedelta(hours=24)


@pytest.fixture
def alice(world) -> Mailbox:
    return sending_box(world, world.owner(), "sales@alpha.test")


@pytest.fixture
def bob(world) -> Mailbox:
    """Another tenant's hosted inbox: where held mail would arrive."""
    return receiving_box(world, world.owner(), "bob@beta.test")


@pytest.fixture
def held(world, alice) -> Agent:
    """alice's agent whose sends are held; it may even read and write approvals."""
    return world.agent(alice.owner, alice.inbox_id, ["email:send", "email:read", "approvals:read", "approvals:write"],
                       requires_approval=["email:send"])


@pytest.fixture
def worker(store, settings):
    from appliance.worker import Worker
    w = Worker(store, settings)
    yield w
    w.close()


def hold(client, agent: Agent, headers: dict | None = None, **body) -> str:
    resp = send(client, agent.auth, headers=headers, **(body or SIMPLE))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert set(resp.json) == {"queued", "approval_id"} and resp.json["queued"] is True
    return resp.json["approval_id"]


def get(client, auth: dict, approval_id: str) -> dict:
    resp = client.get(f"/v1/approvals/{approval_id}/", headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert set(resp.json) == APPROVAL_FIELDS
    return resp.json


def decide(client, auth: dict, approval_id: str, verb: str = "approve"):
    return client.post(f"/v1/approvals/{approval_id}/{verb}/", headers=auth)


def queued(store) -> int:
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(OutboundQueue).where(OutboundQueue.message_id.is_not(None)))


def types_of(client, auth: dict, resource_id: str) -> list[str]:
    return [e["type"] for e in event_list(client, auth) if e["resource_id"] == resource_id]


# --- held -----------------------------------------------------------------------------------
def test_a_held_send_is_stored_unsigned_with_a_pending_approval_and_nothing_is_queued(
        client, store, worker, alice, bob, held):
    approval_id = hold(client, held, **SIMPLE, cc=[{"email": "carol@beta.test"}], bcc=[{"email": "dan@beta.test"}])
    approval = get(client, alice.owner.auth, approval_id)
    assert approval["status"] == "pending" and approval["action_type"] == "email:send"
    assert approval["inbox_id"] == alice.inbox_id and approval["token_label"] == "test agent"
    assert approval["decided_by"] is None and approval["decided_at"] is None
    queued_at = dt.datetime.fromisoformat(approval["queued_at"])
    assert dt.datetime.fromisoformat(approval["expires_at"]) - queued_at == DAY
    summary = approval["summary"]
    assert summary["recipients"] == ["bob@beta.test", "carol@beta.test", "dan@beta.test"]  # bcc shown to reviewers
    assert summary["subject"] == "Quarterly numbers"
    assert summary["first_lines"] == "Hello Bob,\nThe numbers are up.\nSee you."
    message = full(client, alice.auth, summary["message_id"])
    assert message["status"] == "held" and message["delivery"] == [] and message["thread_id"] == summary["thread_id"]
    assert "DKIM-Signature" not in message_from_bytes(raw_of(client, alice.auth, message["message_id"]))
    # The agent sees its own inbox's approval (approvals:read), and the event with email:read.
    assert get(client, held.auth, approval_id)["status"] == "pending"
    assert types_of(client, alice.auth, approval_id) == ["approval.requested"]
    worker.run_until_idle()
    assert queued(store) == 0 and listed(client, bob.auth) == []


def test_listing_puts_pending_first_filters_by_status_and_pages(client, alice, held):
    ids = [hold(client, held) for _ in range(4)]
    assert decide(client, alice.owner.auth, ids[3], "reject").status_code == 204
    resp = client.get("/v1/approvals/", headers=alice.owner.auth)
    assert resp.status_code == 200 and resp.json["cursor"] is None
    assert [a["approval_id"] for a in resp.json["results"]] == [ids[2], ids[1], ids[0], ids[3]]
    pending = client.get("/v1/approvals/", query_string={"status": "pending"}, headers=alice.owner.auth).json
    assert [a["approval_id"] for a in pending["results"]] == [ids[2], ids[1], ids[0]]
    rejected = client.get("/v1/approvals/", query_string={"status": "rejected"}, headers=held.auth).json
    assert [(a["approval_id"], a["status"]) for a in rejected["results"]] == [(ids[3], "rejected")]
    seen, cursor = [], None
    while True:
        page = client.get("/v1/approvals/", query_string={"limit": 1, **({"cursor": cursor} if cursor else {})},
                          headers=alice.owner.auth).json
        seen += [a["approval_id"] for a in page["results"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == [ids[2], ids[1], ids[0], ids[3]]
    assert_error(client.get("/v1/approvals/", query_string={"status": "maybe"}, headers=alice.owner.auth),
                 400, "validation_error", field="status")


# --- approve, reject, expire ---------------------------------------------------------------
def test_approve_signs_and_queues_the_held_bytes_and_the_worker_delivers_them(
        client, store, worker, world, alice, bob, held):
    approval_id = hold(client, held)
    message_id = get(client, alice.owner.auth, approval_id)["summary"]["message_id"]
    held_raw = raw_of(client, alice.auth, message_id)
    assert decide(client, alice.owner.auth, approval_id).status_code == 204

    signed = raw_of(client, alice.auth, message_id)
    signature, _, rest = signed.partition(b"\r\n")
    while rest[:1] in (b" ", b"\t") or rest.startswith(b"DKIM-Signature:"):  # folded lines; the Ed25519 one
        _, _, rest = rest.partition(b"\r\n")
    assert signature.startswith(b"DKIM-Signature:") and rest == held_raw  # exactly as held, signed on top
    assert signed.count(b"DKIM-Signature:") == 2  # RSA and Ed25519 (issue 26)
    approval = get(client, alice.owner.auth, approval_id)
    assert approval["status"] == "approved" and approval["decided_by"] == alice.owner.user_id
    assert approval["decided_at"] is not None
    assert full(client, alice.auth, message_id)["status"] == "queued" and queued(store) == 1
    assert types_of(client, alice.auth, approval_id) == ["approval.requested", "approval.approved"]

    worker.run_until_idle()
    [arrived] = listed(client, bob.auth)
    assert arrived["subject"] == "Quarterly numbers"
    assert full(client, alice.auth, message_id)["status"] == "sent"
    assert types_of(client, alice.auth, message_id) == ["message.sent", "message.delivered"]
    assert_error(decide(client, alice.owner.auth, approval_id), 400, "approval_decided")
    assert_error(decide(client, alice.owner.auth, approval_id, "reject"), 400, "approval_decided")
    worker.run_until_idle()
    assert len(listed(client, bob.auth)) == 1 and queued(store) == 1


def test_reject_discards_the_message_for_good_and_the_agent_sees_it(client, store, worker, alice, bob, held):
    approval_id = hold(client, held)
    assert decide(client, alice.owner.auth, approval_id, "reject").status_code == 204
    approval = get(client, held.auth, approval_id)
    assert approval["status"] == "rejected" and approval["decided_by"] == alice.owner.user_id
    assert full(client, held.auth, approval["summary"]["message_id"])["status"] == "rejected"
    assert types_of(client, held.auth, approval_id) == ["approval.requested", "approval.rejected"]
    assert_error(decide(client, alice.owner.auth, approval_id), 400, "approval_decided")
    worker.run_until_idle()
    assert queued(store) == 0 and listed(client, bob.auth) == []


def test_an_approval_expires_after_24_hours_and_is_never_delivered(client, store, world, worker, alice, bob, held):
    approval_id = hold(client, held)
    clock.advance(DAY - dt.timedelta(seconds=5))
    owner = world.login(alice.owner.email)  # the first session ran out with the clock
    worker.run_until_idle()
    assert get(client, owner.auth, approval_id)["status"] == "pending"
    clock.advance(dt.timedelta(seconds=6))
    # Past expiry, before the worker's sweep: already refused.
    assert_error(decide(client, owner.auth, approval_id), 400, "approval_expired")
    worker.run_once()
    approval = get(client, held.auth, approval_id)
    assert approval["status"] == "expired" and approval["decided_by"] is None and approval["decided_at"]
    assert full(client, held.auth, approval["summary"]["message_id"])["status"] == "expired"
    assert types_of(client, held.auth, approval_id) == ["approval.requested", "approval.expired"]
    assert_error(decide(client, owner.auth, approval_id), 400, "approval_expired")
    assert_error(decide(client, owner.auth, approval_id, "reject"), 400, "approval_expired")
    worker.run_until_idle()
    assert queued(store) == 0 and listed(client, bob.auth) == []
    assert types_of(client, held.auth, approval_id).count("approval.expired") == 1


def test_the_expiry_is_a_setting(make_app, make_settings, world_for):
    client = make_app(make_settings(approval_ttl=3600)).test_client()
    world = world_for(client)
    box = sending_box(world, world.owner(), "sales@alpha.test")
    agent = world.agent(box.owner, box.inbox_id, ["email:send"], requires_approval=["email:send"])
    approval = get(client, box.owner.auth, hold(client, agent))
    when = {k: dt.datetime.fromisoformat(approval[k]) for k in ("queued_at", "expires_at")}
    assert when["expires_at"] - when["queued_at"] == dt.timedelta(hours=1)


# --- bypass attempts ------------------------------------------------------------------------
def test_a_reply_to_a_thread_is_held_too_with_its_threading_headers(client, store, world, alice, bob, held):
    first = client.post("/v1/messages/", json=SIMPLE, headers=alice.auth)  # an unheld send opens the thread
    assert first.status_code == 201
    original = full(client, alice.auth, first.json["message_id"])
    approval_id = hold(client, held, reply_to_message_id=original["message_id"], text_body="Following up.")
    summary = get(client, alice.owner.auth, approval_id)["summary"]
    assert summary["recipients"] == ["bob@beta.test"] and summary["subject"] == "Re: Quarterly numbers"
    reply = full(client, alice.auth, summary["message_id"])
    assert reply["status"] == "held" and reply["thread_id"] == original["thread_id"]
    assert reply["headers"]["In-Reply-To"] == original["headers"]["Message-ID"]
    assert queued(store) == 1  # only the unheld first message


def test_a_new_idempotency_key_makes_a_new_held_approval_never_a_send(client, store, alice, held):
    first = send(client, held.auth, headers={"Idempotency-Key": "k-1"}, **SIMPLE)
    again = send(client, held.auth, headers={"Idempotency-Key": "k-1"}, **SIMPLE)
    assert first.status_code == again.status_code == 202 and again.json == first.json
    assert again.headers.get("Idempotency-Replayed") == "true"
    other = send(client, held.auth, headers={"Idempotency-Key": "k-2"}, **SIMPLE)
    assert other.status_code == 202 and other.json["approval_id"] != first.json["approval_id"]
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Approval)) == 2
    assert queued(store) == 0
    assert {m["status"] for m in listed(client, alice.auth)} == {"held"}


def test_an_agent_never_approves_its_own_inbox_held_actions(client, store, world, alice, held):
    approval_id = hold(client, held)
    for verb in ("approve", "reject"):
        err = assert_error(decide(client, held.auth, approval_id, verb), 403, "forbidden")
        assert "own" in err["message"]
    # Nor a second token of the same inbox, however reviewing its scopes.
    sibling = world.agent(alice.owner, alice.inbox_id, ["approvals:read", "approvals:write"])
    assert_error(decide(client, sibling.auth, approval_id), 403, "forbidden")
    # Nor, through the service (the web UI's path), anything but a different principal.
    with store.session() as db:
        principal = authenticate(db, held.raw)
        with pytest.raises(ForbiddenError):
            approvals.approve(db, store.settings, principal, approval_id)
    assert get(client, alice.owner.auth, approval_id)["status"] == "pending" and queued(store) == 0


def test_another_tenant_or_inbox_cannot_see_or_decide_the_item(client, store, world, alice, held):
    approval_id = hold(client, held)
    stranger = world.owner()
    stranger_reviewer = world.agent(stranger, world.inbox(stranger), ["approvals:read", "approvals:write"])
    for auth in (stranger.auth, stranger_reviewer.auth):
        assert_error(client.get(f"/v1/approvals/{approval_id}/", headers=auth), 404, "not_found")
        assert_error(decide(client, auth, approval_id), 404, "not_found")
        assert_error(decide(client, auth, approval_id, "reject"), 404, "not_found")
        assert client.get("/v1/approvals/", headers=auth).json["results"] == []
    # Same tenant, another inbox, only approvals:read: not a reviewer, so not visible.
    reader = world.agent(alice.owner, world.inbox(alice.owner), ["approvals:read"])
    assert_error(client.get(f"/v1/approvals/{approval_id}/", headers=reader.auth), 404, "not_found")
    assert_error(decide(client, reader.auth, approval_id), 403, "insufficient_scope")
    # A member of the tenant (not owner or admin) may not decide.
    member = world.member(alice.owner)
    assert_error(decide(client, member.auth, approval_id), 403, "forbidden")
    # A token whose own actions are held is no reviewer, even of another inbox.
    other_inbox = world.sender(alice.owner, "ops@alpha.test").inbox_id
    held_reviewer = world.agent(alice.owner, other_inbox, ["email:send", "approvals:read", "approvals:write"],
                                requires_approval=["email:send"])
    assert_error(decide(client, held_reviewer.auth, approval_id), 404, "not_found")
    assert get(client, alice.owner.auth, approval_id)["status"] == "pending" and queued(store) == 0


def test_a_reviewer_token_of_another_inbox_and_an_admin_may_decide(client, store, world, alice, held):
    reviewer = world.agent(alice.owner, world.inbox(alice.owner), ["approvals:read", "approvals:write"])
    first, second = hold(client, held), hold(client, held)
    listing = client.get("/v1/approvals/", headers=reviewer.auth).json["results"]
    assert {a["approval_id"] for a in listing} == {first, second}
    assert decide(client, reviewer.auth, first).status_code == 204
    assert get(client, alice.owner.auth, first)["decided_by"] == reviewer.token_id
    admin = world.member(alice.owner, "admin")
    assert decide(client, admin.auth, second, "reject").status_code == 204
    assert get(client, alice.owner.auth, second)["decided_by"] == admin.user_id
    assert queued(store) == 1


def test_a_route_that_cannot_hold_refuses_a_token_whose_scope_is_held(client, world, alice):
    """Fail closed: email:write listed in requires_approval, and PATCH/DELETE cannot be held."""
    first = client.post("/v1/messages/", json=SIMPLE, headers=alice.auth).json["message_id"]
    writer = world.agent(alice.owner, alice.inbox_id, ["email:read", "email:write"], requires_approval=["email:write"])
    path = f"/v1/messages/{first}/"
    assert_error(client.patch(path, json={"is_read": False}, headers=writer.auth), 403, "approval_required")
    assert_error(client.delete(path, headers=writer.auth), 403, "approval_required")
    assert client.get(path, headers=writer.auth).status_code == 200  # its other scopes work
    assert full(client, alice.auth, first)["is_read"] is True


def test_a_paused_token_is_refused_on_every_call_with_token_paused(client, store, world, alice, held):
    reviewer = world.agent(alice.owner, world.inbox(alice.owner), ["approvals:read", "approvals:write"])
    approval_id = hold(client, held)
    for token in (held, reviewer):
        resp = client.patch(f"/v1/tokens/{token.token_id}/", json={"action": "pause"}, headers=alice.owner.auth)
        assert resp.status_code == 200 and resp.json["status"] == "paused"
    calls = [lambda a: send(client, a, **SIMPLE), lambda a: client.get("/v1/approvals/", headers=a),
             lambda a: client.get(f"/v1/approvals/{approval_id}/", headers=a), lambda a: decide(client, a, approval_id),
             lambda a: client.get("/v1/messages/", headers=a)]
    for token in (held, reviewer):
        for call in calls:
            assert_error(call(token.auth), 403, "token_paused")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Approval)) == 1
    assert get(client, alice.owner.auth, approval_id)["status"] == "pending"


def test_the_service_gives_the_web_ui_the_held_message_and_a_pending_count(store, world, alice, held, client):
    first, second = hold(client, held), hold(client, held)
    assert decide(client, alice.owner.auth, second, "reject").status_code == 204
    stranger_token = world.owner().access_token
    with store.session() as db:
        owner = authenticate(db, alice.owner.access_token)
        message = approvals.held_message(db, owner, first)
        assert message.status == "held" and message.subject == "Quarterly numbers"
        assert approvals.pending_count(db, owner) == 1
        stranger = authenticate(db, stranger_token)
        assert approvals.pending_count(db, stranger) == 0
        with pytest.raises(NotFoundError):
            approvals.held_message(db, stranger, first)


def test_the_openapi_document_describes_approvals_and_the_held_202(client):
    doc = client.get("/v1/openapi.json").json
    paths = doc["paths"]
    assert set(paths["/v1/approvals/"]) == {"get"} and set(paths["/v1/approvals/{approval_id}/"]) == {"get"}
    for verb in ("approve", "reject"):
        op = paths[f"/v1/approvals/{{approval_id}}/{verb}/"]["post"]
        assert op["x-auth"] == "scope: approvals:write" and "204" in op["responses"]
    assert paths["/v1/approvals/"]["get"]["x-auth"] == "scope: approvals:read"
    send_op = paths["/v1/messages/"]["post"]
    assert {"201", "202"} <= set(send_op["responses"])
    held_schema = send_op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][held_schema]["properties"]) == {"queued", "approval_id"}
    errors = client.get("/v1/reference/errors/").get_data(as_text=True)
    for code in ("approval_expired", "approval_decided", "approval_required"):
        assert code in errors
