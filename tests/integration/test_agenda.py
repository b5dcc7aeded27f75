"""Issue 18 point 7, the agenda (GET /v1/agenda/): mail from a person that waits 24 h for a reply
is a missed reply (the clock is moved, not waited for) and leaves the agenda once a reply is
sent (a reply held for approval is not sent yet); automated mail (Auto-Submitted, Precedence
bulk/list/junk, List-Id, a null sender) never shows; open tasks show, undated ones first; the
cursor pages stably; other areas plug in through `register_source`. Mail arrives over real
SMTP at the listener. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from appliance import clock
from appliance.models import Message
from appliance.services.workspace import agenda
from tests.helpers import assert_error
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401

DESK = "desk@agenda.example"


def mail(subject: str, *, sender: str = "alice@partner.example", headers: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {DESK}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}.{clock.utcnow().timestamp()}@partner.example>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n{headers}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease answer.\r\n").encode()


@pytest.fixture
def desk(world, store, smtp_listener):
    owner = world.owner()
    sender = world.sender(owner, DESK)
    reader = world.agent(owner, sender.inbox_id, ["task:read", "task:write", "email:read"])
    listener = smtp_listener()
    with smtp_client(listener) as smtp:
        for subject, headers, envelope in [
            ("Can we meet", "", "alice@partner.example"),
            ("Personal despite the header", "Auto-Submitted: no\r\n", "bob@partner.example"),
            ("Out of office", "Auto-Submitted: auto-replied\r\n", "carol@partner.example"),
            ("Weekly digest", "Precedence: bulk\r\n", "news@partner.example"),
            ("List post", "List-Id: <devs.partner.example>\r\n", "list@partner.example"),
            ("Delivery failed", "", ""),  # a bounce: MAIL FROM:<>
        ]:
            assert smtp.sendmail(envelope, [DESK], mail(subject, headers=headers)) == {}
    return owner, sender, reader


def items(client, auth, **query) -> list[dict]:
    resp = client.get("/v1/agenda/", query_string=query, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json["items"]


def missed(client, auth) -> list[str]:
    return sorted(i["title"] for i in items(client, auth) if i["kind"] == "missed_reply")


def test_a_missed_reply_shows_after_24_hours_and_leaves_once_answered(client, store, world, desk):
    owner, sender, reader = desk
    held = world.agent(owner, sender.inbox_id, ["email:send"], requires_approval=["email:send"])
    with store.session() as db:  # the verdict is kept at receipt (the bounce is told by its null sender)
        kept = dict(db.execute(select(Message.subject, Message.automated)).all())
    assert kept == {"Can we meet": False, "Personal despite the header": False, "Out of office": True,
                    "Weekly digest": True, "List post": True, "Delivery failed": False}
    assert missed(client, reader.auth) == []
    clock.advance(dt.timedelta(hours=23, minutes=59))
    assert missed(client, reader.auth) == []
    clock.advance(dt.timedelta(minutes=2))
    assert missed(client, reader.auth) == ["Can we meet", "Personal despite the header"]
    [item] = [i for i in items(client, reader.auth) if i["title"] == "Can we meet"]
    assert item["pending"] is True and item["id"].startswith("thr_")
    assert item["resource"]["from"]["email"] == "alice@partner.example"
    received = dt.datetime.fromisoformat(item["resource"]["received_at"])
    assert dt.datetime.fromisoformat(item["at"]) == received + dt.timedelta(hours=24)

    messages = client.get("/v1/messages/", headers=sender.auth).json["results"]
    waiting = next(m for m in messages if m["subject"] == "Can we meet")
    # A reply held for approval has not been sent: the thread still waits.
    queued = client.post("/v1/messages/", json={"reply_to_message_id": waiting["message_id"], "text_body": "Soon."},
                         headers=held.auth)
    assert queued.status_code == 202, queued.json
    assert missed(client, reader.auth) == ["Can we meet", "Personal despite the header"]
    sent = client.post("/v1/messages/", json={"reply_to_message_id": waiting["message_id"], "text_body": "Yes."},
                       headers=sender.auth)
    assert sent.status_code == 201, sent.json
    assert missed(client, reader.auth) == ["Personal despite the header"]


def test_mail_stored_before_the_automated_column_is_read_from_its_headers(client, store, desk):
    _, sender, reader = desk
    with store.session() as db:  # as rows stored before migration 0024 are
        db.execute(update(Message).where(Message.inbox_id == sender.inbox_id).values(automated=None))
    clock.advance(dt.timedelta(hours=25))
    assert missed(client, reader.auth) == ["Can we meet", "Personal despite the header"]


def test_tasks_undated_first_then_by_time_and_stable_paging(client, desk):
    _, sender, reader = desk
    def task(summary: str, due: str | None = None) -> str:  # noqa: E306
        body = {"summary": summary, **({"due": due} if due else {})}
        return client.post("/v1/tasks/", json=body, headers=reader.auth).json["task_id"]
    later, undated, soon = task("Later", "in 3 days"), task("Someday"), task("Soon", "in 2 hours")
    done = task("Done already")
    client.patch(f"/v1/tasks/{done}/", json={"status": "completed"}, headers=reader.auth)
    clock.advance(dt.timedelta(hours=25))
    whole = items(client, reader.auth)
    assert [(i["kind"], i["title"]) for i in whole] == [
        ("task", "Someday"), ("task", "Soon"), ("missed_reply", "Can we meet"),
        ("missed_reply", "Personal despite the header"), ("task", "Later")]
    assert whole[0]["at"] is None and whole[0]["resource"]["task_id"] == undated
    assert [i["id"] for i in whole if i["kind"] == "task"] == [undated, soon, later]
    paged, cursor = [], None
    while True:
        resp = client.get("/v1/agenda/", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=reader.auth).json
        paged += resp["items"]
        cursor = resp["cursor"]
        if cursor is None:
            break
    assert paged == whole
    # `to` bounds dated items; `from` keeps what is still pending from before it.
    bounded = items(client, reader.auth, **{"from": "now", "to": "in 1 day"})
    assert [i["title"] for i in bounded] == ["Someday", "Soon", "Can we meet", "Personal despite the header"]


def test_bad_agenda_input_is_400(client, desk):
    _, _, reader = desk
    assert_error(client.get("/v1/agenda/", query_string={"from": "banana"}, headers=reader.auth), 400, "invalid_time")
    assert_error(client.get("/v1/agenda/", query_string={"cursor": "bm9wZQ"}, headers=reader.auth), 400,
                 "validation_error")
    assert_error(client.get("/v1/agenda/", query_string={"from": "in 2 days", "to": "tomorrow"},
                            headers=reader.auth), 400, "validation_error")


def test_other_areas_plug_in_through_register_source(client, world, desk):
    owner, sender, reader = desk

    def offers(db, inbox_id, frm, to):  # noqa: ANN001, ANN202
        return [{"id": "shr_01J00000000000000000000000", "title": "Contact offered: Dora", "at": None,
                 "pending": True, "resource": {"share_id": "shr_01J00000000000000000000000"}}]
    saved = {kind: agenda._SOURCES.get(kind) for kind in ("share", "event")}  # the real ones come back below
    agenda.register_source("share", offers)
    agenda.register_pending("event", lambda db, inbox_id: [
        {"id": "cal_01J00000000000000000000000", "title": "Invitation: Kick-off", "pending": True,
         "at": dt.datetime(2031, 1, 1, 9, tzinfo=dt.timezone.utc), "resource": {}}], scope="calendar:read")
    try:
        found = items(client, reader.auth)
        [share] = [i for i in found if i["kind"] == "share"]
        assert share == {"kind": "share", "id": "shr_01J00000000000000000000000", "title": "Contact offered: Dora",
                         "at": None, "pending": True, "resource": {"share_id": "shr_01J00000000000000000000000"}}
        assert not [i for i in found if i["kind"] == "event"]  # the reader lacks calendar:read
        calendar = world.agent(owner, sender.inbox_id, ["calendar:read"])
        [event] = [i for i in items(client, calendar.auth) if i["kind"] == "event"]
        assert event["at"] == "2031-01-01T09:00:00+00:00"
        assert not [i for i in items(client, calendar.auth) if i["kind"] == "task"]  # no task:read
    finally:
        for kind, source in saved.items():
            if source is None:
                agenda._SOURCES.pop(kind, None)
            else:
                agenda._SOURCES[kind] = source
