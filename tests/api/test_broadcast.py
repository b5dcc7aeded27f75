"""Issue 16 point 2, broadcast (contract section 9) through the real Flask app and the real Worker:
one message per contact of a label, each with its own signed RFC 8058 one-click unsubscribe URL
(POSTed with a real HTTP client to a live werkzeug server), unsubscribed and hard-bounced addresses
skipped, one approval for a held broadcast, and a reply claimed before a large broadcast's rows.
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import base64
import datetime as dt
import threading
from email import message_from_bytes, policy
from email.utils import getaddresses
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from appliance.ids import new_id
from appliance.models import (Approval, Contact, ContactEmail, Event, Inbox, Label, Message, MessageRaw, OutboundQueue,
                              OutboundRecipient, Unsubscribe)
from appliance.services.mail import labels, outbound
from appliance.services.workspace import contacts
from tests.api.test_messages import listed
from tests.api.test_send import Mailbox, raw_of, receiving_box, sending_box, sent_ok
from tests.helpers import assert_error
from tests.world import Agent

ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def alice(world) -> Mailbox:
    return sending_box(world, world.owner(), "news@alpha.test")


@pytest.fixture
def bob(world) -> Mailbox:
    """Another tenant's hosted inbox: the one contact whose copy really arrives."""
    return receiving_box(world, world.owner(), "bob@beta.test")


@pytest.fixture
def worker(store, settings):
    from appliance.worker import Worker
    w = Worker(store, settings)
    yield w
    w.close()


@pytest.fixture
def live(app):
    """The same app behind a real HTTP server on port 0."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


# --- helpers ----------------------------------------------------------------------------------
def add_contacts(store, inbox_id: str, addresses: list[str], label: str = "customers") -> str:
    """Contacts of the inbox with the label (through the contacts service); the label's id."""
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        for address in addresses:
            contacts.create_contact(db, inbox, {"full_name": address.split("@")[0].title(),
                                                "emails": [{"address": address}], "labels": [label]}, actor=None)
    return label_id(store, inbox_id, label)


def bulk_contacts(store, inbox_id: str, count: int, label: str = "customers") -> str:
    """count contacts written in one go (the 1,000-contact test: only the broadcast is under test)."""
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        labels.ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=[label], kind="contact")
        now = dt.datetime.now(dt.timezone.utc)
        for i in range(count):
            cid = new_id("ctc")
            db.add(Contact(id=cid, tenant_id=inbox.tenant_id, inbox_id=inbox.id, full_name=f"C {i}", company="",
                           notes="", phones=[], labels=[label], anniversaries=[], origin={"source": "manual"},
                           search_text="", created_at=now, updated_at=now))
            db.add(ContactEmail(id=new_id("cte"), contact_id=cid, inbox_id=inbox.id,
                                address=f"reader{i}@example.org", label="", position=0))
    return label_id(store, inbox_id, label)


def label_id(store, inbox_id: str, name: str) -> str:
    with store.session() as db:
        return db.scalar(select(Label.id).where(Label.inbox_id == inbox_id, Label.name == name))


def broadcast(client, auth: dict, **body):
    return client.post("/v1/messages/broadcast/", json=body, headers=auth)


def started(client, auth: dict, **body) -> dict:
    resp = broadcast(client, auth, **body)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.json["queued"] is True
    return resp.json


def status(client, auth: dict, broadcast_id: str) -> dict:
    resp = client.get(f"/v1/messages/broadcast/{broadcast_id}/", headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json


def outbound_raws(store, inbox_id: str) -> dict[str, bytes]:
    with store.session() as db:
        return {m: bytes(r) for m, r in db.execute(
            select(MessageRaw.message_id, MessageRaw.raw).join(Message, Message.id == MessageRaw.message_id)
            .where(Message.inbox_id == inbox_id, Message.direction == "outbound"))}


BODY = {"subject": "Spring news", "text_body": "Hello,\n\nOur spring news.\n"}


# --- tests ------------------------------------------------------------------------------------
def test_200_contacts_get_200_single_recipient_messages_and_the_one_click_link_unsubscribes(
        client, store, settings, live, worker, alice, bob):
    addresses = [f"nobody{i}@beta.test" for i in range(199)] + [bob.address]
    label = add_contacts(store, alice.inbox_id, addresses)
    first = started(client, alice.auth, label_id=label, **BODY)
    assert first["recipients"] == 200

    raws = outbound_raws(store, alice.inbox_id)
    assert len(raws) == 200
    seen = set()
    for raw in raws.values():
        msg = message_from_bytes(raw, policy=policy.default)
        [to] = [a for _, a in getaddresses(msg.get_all("To", []))]
        assert msg.get_all("Cc") is None and msg.get_all("Bcc") is None
        seen.add(to)
        assert msg["List-Unsubscribe-Post"] == ONE_CLICK
        assert msg["List-Unsubscribe"].startswith("<") and "/u/" in msg["List-Unsubscribe"]
        assert "list-unsubscribe" in msg["DKIM-Signature"].replace(" ", "").lower()  # signed, as Gmail wants
    assert seen == set(addresses)
    with store.session() as db:
        per_queue = db.execute(select(OutboundRecipient.message_id, func.count()).where(
            OutboundRecipient.message_id.in_(list(raws))).group_by(OutboundRecipient.message_id)).all()
    assert len(per_queue) == 200 and {n for _, n in per_queue} == {1}

    worker.run_until_idle()
    with store.session() as db:  # announced by the worker once every message left, before any read
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.type == "broadcast.completed", Event.resource_id == first["broadcast_id"])) == 1
    [arrived] = listed(client, bob.auth)
    received = message_from_bytes(raw_of(client, bob.auth, arrived["message_id"]), policy=policy.default)
    url = received["List-Unsubscribe"].strip("<>")
    assert received["List-Unsubscribe-Post"] == ONE_CLICK
    parts = urlsplit(url)
    assert url.startswith(settings.base_url + "/u/")  # the appliance's public URL
    page = requests.get(live + parts.path, timeout=10)  # a GET only asks (scanners follow links)
    assert page.status_code == 200 and "<form" in page.text and bob.address in page.text
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Unsubscribe)) == 0
    resp = requests.post(live + parts.path, data=ONE_CLICK, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    assert requests.post(live + parts.path, data=ONE_CLICK, timeout=10).status_code == 200  # idempotent

    done = status(client, alice.auth, first["broadcast_id"])
    assert done["status"] == "completed" and done["recipients"] == 200 and done["delivered"] == 1
    assert done["bounced"] == 199 and done["queued"] == 0 and done["skipped"] == 0
    with store.session() as db:  # and never twice
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.type == "broadcast.completed", Event.resource_id == first["broadcast_id"])) == 1

    add_contacts(store, alice.inbox_id, ["carol@beta.test"])
    second = started(client, alice.auth, label_id=label, **BODY)
    assert second["recipients"] == 1  # bob unsubscribed, the 199 hard-bounced: all skipped
    report = status(client, alice.auth, second["broadcast_id"])
    assert report["skipped"] == 200
    reasons = {s["address"]: s["reason"] for s in report["skipped_addresses"]}
    assert reasons[bob.address] == "unsubscribed" and reasons["nobody0@beta.test"] == "bounced"
    assert "carol@beta.test" not in reasons


def test_a_tampered_token_is_refused_and_reveals_nothing(client, store, app, alice, bob):
    label = add_contacts(store, alice.inbox_id, [bob.address])
    started(client, alice.auth, label_id=label, **BODY)
    [raw] = outbound_raws(store, alice.inbox_id).values()
    path = urlsplit(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"].strip("<>")).path
    token = path.rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    other = "bob2@beta.test"
    forged_body = base64.urlsafe_b64encode(f"{alice.inbox_id} {other}".encode()).rstrip(b"=").decode()
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (f"{forged_body}.{mac}", f"{body}.{flipped}", body, "x", f"{body}."):
        for method in ("GET", "POST"):
            resp = client.open(f"/u/{bad}", method=method, data=ONE_CLICK,
                               content_type="application/x-www-form-urlencoded")
            assert resp.status_code == 404, (bad, method, resp.status_code)
            assert alice.inbox_id not in resp.get_data(as_text=True)
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Unsubscribe)) == 0


def test_a_held_token_files_one_approval_and_nothing_is_queued_until_it_is_approved(client, store, world, alice):
    held: Agent = world.agent(alice.owner, alice.inbox_id, ["email:send", "email:read"],
                              requires_approval=["email:send"])
    label = add_contacts(store, alice.inbox_id, [f"r{i}@example.org" for i in range(5)])
    answer = started(client, held.auth, label_id=label, **BODY)
    assert answer["approval_id"] and answer["recipients"] == 0
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Approval)) == 1
        assert db.scalar(select(func.count()).select_from(OutboundQueue)) == 0
        assert db.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == alice.inbox_id)) == 0
    assert status(client, held.auth, answer["broadcast_id"])["status"] == "held"
    filed = client.get(f"/v1/approvals/{answer['approval_id']}/", headers=alice.owner.auth).json
    assert filed["action_type"] == "broadcast" and filed["summary"]["contacts"] == 5
    resp = client.post(f"/v1/approvals/{answer['approval_id']}/approve/", headers=alice.owner.auth)
    assert resp.status_code == 204, resp.get_data(as_text=True)
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(OutboundQueue)) == 5
    report = status(client, held.auth, answer["broadcast_id"])
    assert report["status"] == "queued" and report["recipients"] == 5 and report["queued"] == 5


def test_a_reply_sent_after_a_1000_message_broadcast_is_claimed_before_the_broadcast_rows(
        client, store, settings, alice):
    label = bulk_contacts(store, alice.inbox_id, 1000)
    assert started(client, alice.auth, label_id=label, **BODY)["recipients"] == 1000
    reply = sent_ok(client, alice.auth, to=[{"email": "boss@example.net"}], subject="Quick answer",
                    text_body="Yes.\n")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    with store.session() as db:
        first = outbound.claim(db, settings, owner="test", limit=5, now=later)
        rows = {j.queue_id: db.get(OutboundQueue, j.queue_id).message_id for j in first}
    assert list(rows.values())[0] == reply["message_id"]
    assert len(rows) == 5  # then the broadcast continues, a pass at a time


def test_a_label_of_another_tenant_or_of_type_message_is_refused(client, store, world, alice):
    stranger = sending_box(world, world.owner(), "other@gamma.test")
    theirs = add_contacts(store, stranger.inbox_id, ["x@example.org"])
    assert_error(broadcast(client, alice.auth, label_id=theirs, **BODY), 404, "not_found")
    with store.session() as db:
        inbox = db.get(Inbox, alice.inbox_id)
        [mine] = labels.ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=["invoices"], kind="message")
        mine_id = mine.id
    assert broadcast(client, alice.auth, label_id=mine_id, **BODY).status_code == 400
    own = started(client, stranger.auth, label_id=theirs, **BODY)["broadcast_id"]
    assert_error(client.get(f"/v1/messages/broadcast/{own}/", headers=alice.auth), 404, "not_found")
