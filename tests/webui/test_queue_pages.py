"""The queue page: waiting and failed outbound mail with the last SMTP reply, attempts and next
attempt; retry now; cancel (confirmed, honest: the recipients fail, the message says so, the
worker never takes the row again). Operators see the whole box, owners only their tenant's.

Rows are made by the API's send path and tried by the real Worker, whose resolver points at a
dead loopback port (the test settings): each attempt ends deferred with its own reply."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from appliance.clock import utcnow
from appliance.models import Event, Message, OutboundQueue, OutboundRecipient, SystemMail
from appliance.worker import Worker
from tests.webui.conftest import make_operator, text_of


@pytest.fixture
def worker(store, settings):  # noqa: ANN001, ANN201
    w = Worker(store, settings)
    yield w
    w.close()


def _send(world, owner, client, subject: str, to: str = "ann@unreachable.example") -> str:  # noqa: ANN001
    agent = world.sender(owner)
    resp = client.post("/v1/messages/", headers=agent.auth,
                       json={"to": [{"email": to}], "subject": subject, "text_body": "Hello."})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.json["message_id"]


def _row(store, message_id: str) -> OutboundQueue:  # noqa: ANN001
    with store.session() as db:
        row = db.scalar(select(OutboundQueue).where(OutboundQueue.message_id == message_id))
        db.expunge(row)
        return row


@pytest.fixture
def quiet(store):  # noqa: ANN001, ANN201
    """The owners' own sign-up mails are not what these tests watch."""
    def hush() -> None:
        with store.session() as db:
            db.execute(update(SystemMail).values(status="sent", raw=b""))
    return hush


def test_owners_see_their_tenants_queue_and_operators_the_whole_box(web_for, world, owner, client, store,
                                                                       worker, quiet):  # noqa: ANN001
    quiet()
    mine = _send(world, owner, client, "Mine, deferred")
    stranger = world.owner()
    theirs = _send(world, stranger, client, "Theirs, private")
    worker.run_until_idle()
    row = _row(store, mine)
    assert row.status == "deferred" and row.attempts == 1 and row.last_reply

    web = web_for()
    web.sign_in(owner.email)
    body = text_of(web.get("/admin/queue/"))
    assert "Mine, deferred" in body and "ann@unreachable.example" in body and "Theirs" not in body
    assert row.last_reply in body and row.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S") in body
    assert "No failed deliveries." in text_of(web.get("/admin/queue/?view=failed"))

    operator = web_for()
    operator.sign_in(make_operator(world))
    box = text_of(operator.get("/admin/queue/"))
    assert box.count("ann@unreachable.example") == 2  # both tenants' rows
    assert "Theirs, private" not in box and "Mine, deferred" not in box  # another tenant's subject: no
    assert _row(store, theirs).id in box


def test_retry_now_makes_a_deferred_row_due(web, world, owner, client, store, worker, quiet):  # noqa: ANN001
    quiet()
    message_id = _send(world, owner, client, "Try again")
    worker.run_until_idle()
    row = _row(store, message_id)
    assert row.next_attempt_at > utcnow() + dt.timedelta(seconds=30)
    web.sign_in(owner.email)
    resp = web.post(f"/admin/queue/{row.id}/retry/")
    assert resp.status_code == 303
    assert "is due now" in text_of(web.get(resp.headers["Location"]))
    assert _row(store, message_id).next_attempt_at <= utcnow()
    worker.run_until_idle()
    assert _row(store, message_id).attempts == 2


def test_cancel_asks_first_then_fails_the_recipients_for_good(web, world, owner, client, store, worker, quiet):  # noqa: ANN001
    quiet()
    message_id = _send(world, owner, client, "Never mind")
    worker.run_until_idle()
    row = _row(store, message_id)
    web.sign_in(owner.email)
    asked = web.post(f"/admin/queue/{row.id}/cancel/")
    assert asked.status_code == 200 and "Please confirm" in text_of(asked)
    assert _row(store, message_id).status == "deferred"
    resp = web.post(f"/admin/queue/{row.id}/cancel/", {"confirm": "yes"})
    assert "Cancelled the delivery" in text_of(web.get(resp.headers["Location"]))
    with store.session() as db:
        done = db.get(OutboundQueue, row.id)
        assert done.status == "done" and done.finished_at is not None
        [rcpt] = db.scalars(select(OutboundRecipient).where(OutboundRecipient.queue_id == row.id)).all()
        assert rcpt.status == "failed" and rcpt.smtp_reply.startswith(f"Cancelled by {owner.email}")
        assert db.get(Message, message_id).status == "bounced"
        [event] = db.scalars(select(Event).where(Event.type == "message.bounced",
                                                 Event.resource_id == message_id)).all()
        assert event.payload["cancelled"] is True and event.payload["recipients"] == ["ann@unreachable.example"]
    api = client.get(f"/v1/messages/{message_id}/", query_string={"inbox_id": done.inbox_id}, headers=owner.auth)
    assert [d["status"] for d in api.json["delivery"]] == ["failed"]
    assert "The queue is empty" in text_of(web.get("/admin/queue/"))
    assert "Never mind" in text_of(web.get("/admin/queue/?view=failed"))
    with store.session() as db:  # due or not, the worker never takes it again
        db.execute(update(OutboundQueue).where(OutboundQueue.id == row.id).values(next_attempt_at=utcnow()))
    worker.run_until_idle()
    assert _row(store, message_id).attempts == 1
    again = web.post(f"/admin/queue/{row.id}/cancel/", {"confirm": "yes"})
    assert "already left the queue" in text_of(web.get(again.headers["Location"]))


def test_a_row_being_delivered_is_left_alone(web, world, owner, client, store, quiet):  # noqa: ANN001
    quiet()
    message_id = _send(world, owner, client, "In flight")
    row = _row(store, message_id)
    with store.session() as db:  # as a worker's claim leaves it
        db.execute(update(OutboundQueue).where(OutboundQueue.id == row.id).values(
            status="delivering", lease_owner="worker-1", lease_until=utcnow() + dt.timedelta(minutes=5)))
    web.sign_in(owner.email)
    assert "being delivered" in text_of(web.get("/admin/queue/"))
    for verb in ("retry", "cancel"):
        resp = web.post(f"/admin/queue/{row.id}/{verb}/", {"confirm": "yes"})
        assert "The worker is delivering this message right now." in text_of(web.get(resp.headers["Location"]))
    after = _row(store, message_id)
    assert after.status == "delivering" and after.lease_owner == "worker-1"


def test_another_tenants_row_is_not_found(web, world, owner, client, store, quiet):  # noqa: ANN001
    quiet()
    stranger = world.owner()
    row = _row(store, _send(world, stranger, client, "Theirs"))
    web.sign_in(owner.email)
    for verb in ("retry", "cancel"):
        resp = web.post(f"/admin/queue/{row.id}/{verb}/", {"confirm": "yes"})
        assert "No such queued message." in text_of(web.get(resp.headers["Location"]))
    assert _row(store, row.message_id).status == "queued"
