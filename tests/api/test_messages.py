"""Contract section 5 through the API: reading, searching, marking and deleting received mail.

Mail is real MIME built with email.message.EmailMessage and stored by the inbound service that
the SMTP listener calls (`inbound.receive`: real parsing, threading and indexing). Every test
runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select, text, update

from api.routes.mail.messages import MessageFull, MessageList
from appliance import clock
from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Attachment, Message, MessageRaw, MessageSearch, Thread
from appliance.services.mail import inbound
from tests.helpers import assert_error
from tests.world import Agent, Person, World

SENDER = "alice@sender.example"
NO_ID = "msg_01J00000000000000000000000"


# --- building and delivering mail -------------------------------------------------------------
def build_mail(*, subject: str = "Hello", sender: str = SENDER, to: str = "agent@box.example",
               text: str | None = "Hello there.", html: str | None = None,
               attachments: tuple[tuple[str, str, bytes], ...] = (), message_id: str | None = None,
               in_reply_to: str | None = None, references: str | None = None, cc: str | None = None) -> bytes:
    """A real RFC 5322 message (CRLF line ends, as it arrives over SMTP)."""
    msg = EmailMessage()
    msg["From"] = f"Alice Sender <{sender}>"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(domain="sender.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references or in_reply_to:
        msg["References"] = references or in_reply_to
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=policy.SMTP)


def deliver(world: World, inbox_id: str, raw: bytes, *, authentication: dict | None = None,
            trace: bytes = b"") -> str:
    """Store raw for the inbox as the SMTP listener does; the new message's id."""
    with world.store.session() as db:
        [message] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="bounce@sender.example",
                                    envelope_to={}, client_ip="192.0.2.1", authentication=authentication,
                                    trace_headers=trace)
        return message.id


def add_outbound(world: World, inbox_id: str, subject: str = "Sent by the agent") -> str:
    """An outbound message row, as the sending path (a later issue) will store it."""
    now = utcnow()
    with world.store.session() as db:
        inbox_tenant = db.scalar(text("SELECT tenant_id FROM inboxes WHERE id = :i"), {"i": inbox_id})
        thread = Thread(id=new_id("thr"), tenant_id=inbox_tenant, inbox_id=inbox_id, subject=subject,
                        message_count=1, created_at=now, last_message_at=now)
        message = Message(id=new_id("msg"), tenant_id=inbox_tenant, inbox_id=inbox_id, thread_id=thread.id,
                          direction="outbound", status="sent", subject=subject, is_read=True, created_at=now,
                          from_email="agent@box.example", to_addrs=[{"email": "bob@elsewhere.example", "name": ""}],
                          snippet="Outbound text", text_body="Outbound text", sent_at=now)
        db.add_all([thread, message])
        return message.id


@dataclass
class Box:
    world: World
    owner: Person
    inbox_id: str
    agent: Agent  # email:read and email:write

    def deliver(self, raw: bytes, **kwargs) -> str:
        return deliver(self.world, self.inbox_id, raw, **kwargs)


@pytest.fixture
def box(world) -> Box:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    return Box(world, owner, inbox_id, world.agent(owner, inbox_id, ["email:read", "email:write"]))


def listed(client, auth: dict, **query) -> list[dict]:
    resp = client.get("/v1/messages/", query_string=query, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    MessageList.model_validate(resp.json)  # the answer is what the OpenAPI document says
    return resp.json["results"]


def listed_ids(client, auth: dict, **query) -> list[str]:
    return [m["message_id"] for m in listed(client, auth, **query)]


def full(client, auth: dict, message_id: str, **query) -> dict:
    resp = client.get(f"/v1/messages/{message_id}/", query_string=query, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    MessageFull.model_validate(resp.json)
    return resp.json


# --- reading --------------------------------------------------------------------------------
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
HTML = ('<p>Hi <b>agent</b>, see <a href="https://example.org/x" onclick="steal()">the report</a>.</p>'
        '<script>alert("owned")</script><img src="x" onerror="alert(2)">')


def test_an_agent_lists_and_reads_a_received_message(client, box, store):
    raw = build_mail(subject="Quarterly report", text="Numbers are up.\nSee the attachment.", html=HTML,
                     attachments=(("report.pdf", "application/pdf", PDF),), cc="Carol <carol@cc.example>")
    trace = b"Received: from mx.sender.example (192.0.2.1) by mail.gentbox.test\r\n"
    auth = {"spf": "pass", "dkim": "fail", "dmarc": "pass", "dmarc_aligned": True}
    message_id = box.deliver(raw, authentication=auth, trace=trace)

    [summary] = listed(client, box.agent.auth)
    assert summary["message_id"] == message_id and summary["inbox_id"] == box.inbox_id
    assert summary["direction"] == "inbound" and summary["status"] == "received"
    assert summary["from"] == {"email": SENDER, "name": "Alice Sender"}
    assert summary["to"] == [{"email": "agent@box.example", "name": ""}]
    assert summary["cc"] == [{"email": "carol@cc.example", "name": "Carol"}]
    assert summary["subject"] == "Quarterly report"
    assert summary["snippet"] == "Numbers are up. See the attachment."
    assert summary["has_attachments"] is True and summary["is_read"] is False and summary["labels"] == []
    assert summary["received_at"].endswith("Z") and summary["sent_at"] is None
    assert summary["thread_id"].startswith("thr_")
    assert "text_body" not in summary and "html_body" not in summary

    message = full(client, box.agent.auth, message_id)
    assert {k: message[k] for k in summary} == summary
    assert message["text_body"].replace("\r\n", "\n") == "Numbers are up.\nSee the attachment.\n"
    assert message["authentication"] == auth and message["delivery"] is None
    assert message["headers"]["Message-ID"].startswith("<") and message["headers"]["Message-ID"].endswith(">")
    assert message["headers"]["In-Reply-To"] == "" and message["headers"]["Date"]
    # The HTML is sanitised for display: markup kept, scripts and handlers gone.
    html = message["html_body"]
    assert "<b>agent</b>" in html and 'href="https://example.org/x"' in html
    for bad in ("<script", "alert(", "onclick", "onerror", "steal()"):
        assert bad not in html, (bad, html)
    [attachment] = message["attachments"]
    assert attachment["filename"] == "report.pdf" and attachment["content_type"] == "application/pdf"
    assert attachment["size"] == len(PDF) and attachment["disposition"] == "attachment"

    # Raw: the stored bytes exactly (trace headers first, then the message byte for byte).
    resp = client.get(f"/v1/messages/{message_id}/raw/", headers=box.agent.auth)
    assert resp.status_code == 200 and resp.mimetype == "message/rfc822"
    assert resp.get_data() == trace + raw
    with store.session() as db:
        assert bytes(db.get(MessageRaw, message_id).raw) == resp.get_data()
    assert b"<script>" in resp.get_data()  # the original is kept; only html_body is cleaned

    resp = client.get(f"/v1/messages/{message_id}/attachments/{attachment['attachment_id']}/",
                      headers=box.agent.auth)
    assert resp.status_code == 200 and resp.get_data() == PDF
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''report.pdf" in resp.headers["Content-Disposition"]


def test_authentication_defaults_to_none_when_nothing_was_checked(client, box):
    message_id = box.deliver(build_mail())
    assert full(client, box.agent.auth, message_id)["authentication"] == {
        "spf": "none", "dkim": "none", "dmarc": "none", "dmarc_aligned": False}


def test_an_attachment_name_cannot_break_the_download_header(client, box):
    name = 'Résumé "final"; x=1.html'
    raw = build_mail(attachments=((name, "text/html", b"<script>alert(1)</script>"),
                                  ("../../etc/passwd", "application/octet-stream", b"root:x:0:0")))
    message = full(client, box.agent.auth, box.deliver(raw))
    html_part, passwd = message["attachments"]
    assert passwd["filename"] == "passwd"  # no path survives in a file name
    stored = html_part["filename"]
    assert stored.startswith("Résumé") and stored.endswith(".html") and '"' not in stored
    resp = client.get(f"/v1/messages/{message['message_id']}/attachments/{html_part['attachment_id']}/",
                      headers=box.agent.auth)
    assert resp.status_code == 200 and resp.get_data() == b"<script>alert(1)</script>"
    assert resp.headers["Content-Type"] == "text/html"
    disposition = resp.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    fallback, encoded = disposition.removeprefix('attachment; filename="').split('"; filename*=UTF-8\'\'')
    assert fallback.isascii() and not set(fallback) & set('";\\') and fallback.startswith("R_sum_")
    assert unquote(encoded) == stored and encoded.isascii() and ";" not in encoded
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp.headers["Content-Security-Policy"]


def test_an_unparseable_message_is_still_readable_raw(client, box):
    raw = b"\xff\xfe garbage that is no message\r\n\r\n\xc3\x28 --boundary-without-a-start\r\n"
    message_id = box.deliver(raw)
    message = full(client, box.agent.auth, message_id)
    assert message["message_id"] == message_id
    resp = client.get(f"/v1/messages/{message_id}/raw/", headers=box.agent.auth)
    assert resp.get_data() == raw


def test_threads_is_not_taken_for_a_message_id(client, box):
    box.deliver(build_mail())
    resp = client.get("/v1/messages/threads/", headers=box.agent.auth)
    assert resp.status_code == 200 and len(resp.json["results"]) == 1
    assert resp.json["results"][0]["thread_id"].startswith("thr_")
    assert_error(client.get("/v1/messages/threads/raw/", headers=box.agent.auth), 404, "not_found")
    # The thread list only answers GET: DELETE and PATCH are not message calls on an id "threads".
    assert_error(client.delete("/v1/messages/threads/", headers=box.agent.auth), 405, "method_not_allowed")
    assert_error(client.patch("/v1/messages/threads/", json={"is_read": True}, headers=box.agent.auth),
                 405, "method_not_allowed")
    allowed = client.options("/v1/messages/threads/", headers=box.agent.auth).headers["Allow"]
    assert {m.strip() for m in allowed.split(",")} == {"GET", "HEAD", "OPTIONS"}
    assert len(listed(client, box.agent.auth)) == 1


def test_times_are_rendered_in_the_inboxs_zone(client, box):
    message_id = box.deliver(build_mail())
    utc = full(client, box.agent.auth, message_id)["received_at"]
    assert utc.endswith("Z")
    resp = client.patch(f"/v1/inboxes/{box.inbox_id}/", json={"default_timezone": "Asia/Tokyo"},
                        headers=box.owner.auth)
    assert resp.status_code == 200, resp.json
    tokyo = full(client, box.agent.auth, message_id)["received_at"]
    assert tokyo.endswith("+09:00")
    assert dt.datetime.fromisoformat(tokyo) == dt.datetime.fromisoformat(utc)
    assert listed(client, box.agent.auth)[0]["received_at"] == tokyo


# --- who may read ---------------------------------------------------------------------------
def test_session_tokens_name_the_inbox(client, box, world):
    message_id = box.deliver(build_mail())
    q = {"inbox_id": box.inbox_id}
    assert listed_ids(client, box.owner.auth, **q) == [message_id]
    assert full(client, box.owner.auth, message_id, **q)["message_id"] == message_id
    assert client.get(f"/v1/messages/{message_id}/raw/", query_string=q, headers=box.owner.auth).status_code == 200
    assert_error(client.get("/v1/messages/", headers=box.owner.auth), 400, "validation_error", field="inbox_id")
    # Another inbox of the same tenant does not hold the message.
    other_inbox = world.inbox(box.owner)
    assert_error(client.get(f"/v1/messages/{message_id}/", query_string={"inbox_id": other_inbox},
                            headers=box.owner.auth), 404, "not_found")
    # Another tenant's owner: 404 for the inbox, whatever is asked.
    stranger = world.owner()
    for path in ("/v1/messages/", f"/v1/messages/{message_id}/", f"/v1/messages/{message_id}/raw/",
                 "/v1/messages/threads/"):
        assert_error(client.get(path, query_string=q, headers=stranger.auth), 404, "not_found")
    assert_error(client.patch(f"/v1/messages/{message_id}/", query_string=q, json={"is_read": True},
                              headers=stranger.auth), 404, "not_found")
    assert_error(client.delete(f"/v1/messages/{message_id}/", query_string=q, headers=stranger.auth),
                 404, "not_found")
    # A member of the tenant is not the inbox's manager.
    member = world.member(box.owner)
    assert_error(client.get("/v1/messages/", query_string=q, headers=member.auth), 403, "forbidden")
    assert full(client, box.agent.auth, message_id)["is_read"] is False  # nobody changed it


def test_an_agent_never_reaches_another_inboxs_mail(client, box, world):
    other_inbox = world.inbox(box.owner)  # same tenant: the harder case
    theirs = deliver(world, other_inbox, build_mail(subject="Not yours", attachments=(("a.txt", "text/plain", b"x"),)))
    mine = box.deliver(build_mail(subject="Yours"))
    with world.store.session() as db:
        attachment_id = db.scalar(select(Attachment.id).where(Attachment.message_id == theirs))
    auth = box.agent.auth
    assert listed_ids(client, auth) == [mine]
    for call in (lambda: client.get(f"/v1/messages/{theirs}/", headers=auth),
                 lambda: client.get(f"/v1/messages/{theirs}/raw/", headers=auth),
                 lambda: client.get(f"/v1/messages/{theirs}/attachments/{attachment_id}/", headers=auth),
                 lambda: client.get(f"/v1/messages/{mine}/attachments/{attachment_id}/", headers=auth),
                 lambda: client.patch(f"/v1/messages/{theirs}/", json={"is_read": True}, headers=auth),
                 lambda: client.delete(f"/v1/messages/{theirs}/", headers=auth)):
        assert_error(call(), 404, "not_found")
    for call in (lambda: client.get("/v1/messages/", query_string={"inbox_id": other_inbox}, headers=auth),
                 lambda: client.get(f"/v1/messages/{theirs}/", query_string={"inbox_id": other_inbox},
                                    headers=auth),
                 lambda: client.delete(f"/v1/messages/{theirs}/", query_string={"inbox_id": other_inbox},
                                       headers=auth)):
        assert_error(call(), 403, "inbox_mismatch", field="inbox_id")
    reader = world.agent(box.owner, other_inbox, ["email:read"])
    message = full(client, reader.auth, theirs)
    assert message["is_read"] is False and message["subject"] == "Not yours"  # untouched, not deleted


def test_each_endpoint_needs_its_scope(client, box, world):
    message_id = box.deliver(build_mail())
    sender = world.agent(box.owner, box.inbox_id, ["email:send", "email:write"])
    reader = world.agent(box.owner, box.inbox_id, ["email:read"])
    for path in ("/v1/messages/", f"/v1/messages/{message_id}/", f"/v1/messages/{message_id}/raw/",
                 "/v1/messages/threads/"):
        err = assert_error(client.get(path, headers=sender.auth), 403, "insufficient_scope")
        assert "email:read" in err["fix"]
    for resp in (client.patch(f"/v1/messages/{message_id}/", json={"is_read": True}, headers=reader.auth),
                 client.delete(f"/v1/messages/{message_id}/", headers=reader.auth)):
        assert "email:write" in assert_error(resp, 403, "insufficient_scope")["fix"]
    message = full(client, reader.auth, message_id)
    assert message["is_read"] is False
    assert_error(client.get("/v1/messages/", headers={}), 401, "unauthenticated")


# --- search and filters ---------------------------------------------------------------------
def test_search_finds_by_subject_body_and_sender(client, box, world):
    invoice = box.deliver(build_mail(subject="Invoice for November", text="Please pay by Friday."))
    pineapple = box.deliver(build_mail(subject="Lunch", text="Shall we order pineapple pizza today?"))
    bob = box.deliver(build_mail(subject="Hi", text="Just saying hello.", sender="bob.builder@tools.example"))
    html_only = box.deliver(build_mail(subject="Newsletter", text=None, html="<p>The <i>marmalade</i> issue</p>"))
    # The same words in another inbox never show.
    elsewhere = world.inbox(box.owner)
    deliver(world, elsewhere, build_mail(subject="Invoice for November", text="pineapple"))
    auth = box.agent.auth
    assert listed_ids(client, auth, q="invoice") == [invoice]
    assert listed_ids(client, auth, q="NOVEMBER") == [invoice]
    assert listed_ids(client, auth, q="pineapple") == [pineapple]
    assert listed_ids(client, auth, q="marmalade") == [html_only]
    assert listed_ids(client, auth, q="bob.builder@tools.example") == [bob]
    assert listed_ids(client, auth, q=SENDER) == [html_only, pineapple, invoice]
    assert listed_ids(client, auth, q="pineapple pizza") == [pineapple]  # every word must match
    assert listed_ids(client, auth, q="pineapple invoice") == []
    assert listed_ids(client, auth, q="nowhere-to-be-found") == []
    # Query syntax is just text: nothing reaches the search engine as an operator.
    for odd in ('"', "invoice OR lunch", "pay*", "NEAR(a b)", "a:b", "'; DROP TABLE messages; --", "@@ ()"):
        results = listed_ids(client, auth, q=odd)
        assert set(results) <= {invoice, pineapple, bob, html_only}, (odd, results)
    # Search combines with the other filters and with paging.
    assert listed_ids(client, auth, q=SENDER, limit=2) == [html_only, pineapple]
    assert listed_ids(client, auth, q=SENDER, unread="false") == []


def test_filters_direction_unread_thread_label_and_time(client, box, world):
    first = box.deliver(build_mail(subject="First"))
    clock.advance(dt.timedelta(minutes=10))  # well inside the owner's session lifetime
    second = box.deliver(build_mail(subject="Second"))
    clock.advance(dt.timedelta(minutes=10))
    third = box.deliver(build_mail(subject="Third"))
    outbound = add_outbound(world, box.inbox_id)
    auth = box.agent.auth
    assert listed_ids(client, auth) == [outbound, third, second, first]
    assert listed_ids(client, auth, direction="inbound") == [third, second, first]
    assert listed_ids(client, auth, direction="outbound") == [outbound]
    sent = full(client, auth, outbound)
    assert sent["direction"] == "outbound" and sent["sent_at"] and sent["received_at"] is None
    assert sent["authentication"] is None and sent["delivery"] == []

    assert client.patch(f"/v1/messages/{second}/", json={"is_read": True, "labels": ["urgent"]},
                        headers=auth).status_code == 200
    assert listed_ids(client, auth, unread="true") == [third, first]
    assert listed_ids(client, auth, unread="false") == [outbound, second]
    assert listed_ids(client, auth, label="urgent") == [second]
    assert listed_ids(client, auth, label="urgen") == []

    thread_id = full(client, auth, third)["thread_id"]
    assert listed_ids(client, auth, thread_id=thread_id) == [third]

    times = {m["message_id"]: dt.datetime.fromisoformat(m["received_at"]) for m in listed(client, auth)
             if m["received_at"]}
    midway = times[first] + dt.timedelta(minutes=5)
    assert listed_ids(client, auth, after=midway.isoformat(), direction="inbound") == [third, second]
    assert listed_ids(client, auth, before=midway.isoformat()) == [first]
    assert listed_ids(client, auth, after=midway.isoformat(),
                      before=(times[third] - dt.timedelta(minutes=5)).isoformat()) == [second]
    # A naive time means the inbox's zone: the same instant written in Tokyo time.
    resp = client.patch(f"/v1/inboxes/{box.inbox_id}/", json={"default_timezone": "Asia/Tokyo"},
                        headers=box.owner.auth)
    assert resp.status_code == 200, resp.json
    naive_tokyo = midway.astimezone(dt.timezone(dt.timedelta(hours=9))).replace(tzinfo=None)
    assert listed_ids(client, auth, before=naive_tokyo.isoformat()) == [first]
    assert_error(client.get("/v1/messages/", query_string={"after": "yesterday"}, headers=auth),
                 400, "validation_error", field="after")
    assert_error(client.get("/v1/messages/", query_string={"direction": "sideways"}, headers=auth),
                 400, "validation_error", field="direction")


# --- pagination -----------------------------------------------------------------------------
def page_through(client, auth: dict, limit: int, between=None, **query) -> list[str]:
    """Every id over all pages; between(n) runs before page n (n >= 2)."""
    seen, cursor, pages = [], None, 0
    while True:
        pages += 1
        if between and pages > 1:
            between(pages)
        resp = client.get("/v1/messages/", query_string={"limit": limit, **query,
                                                         **({"cursor": cursor} if cursor else {})}, headers=auth)
        assert resp.status_code == 200, resp.json
        assert len(resp.json["results"]) <= limit
        seen += [m["message_id"] for m in resp.json["results"]]
        cursor = resp.json["cursor"]
        if cursor is None:
            return seen


def test_pages_neither_repeat_nor_skip_under_concurrent_arrivals(client, box, world):
    older = [box.deliver(build_mail(subject=f"Old {i}")) for i in range(8)]
    # Several messages in the same instant: the cursor must still order them exactly.
    with world.store.session() as db:
        same = db.get(Message, older[2]).created_at
        db.execute(update(Message).where(Message.id.in_(older[2:6])).values(created_at=same))
    expected = listed_ids(client, box.agent.auth, limit=200)
    assert sorted(expected) == sorted(older) and len(expected) == 8

    arrived: list[str] = []
    seen = page_through(client, box.agent.auth, 3, between=lambda n: arrived.extend(
        box.deliver(build_mail(subject=f"New {n}.{i}")) for i in range(2)))
    assert len(seen) == len(set(seen)), "a message was listed twice"
    assert [m for m in seen if m in older] == expected, "an older message was skipped or reordered"
    assert len(arrived) >= 4
    # The arrivals are newest, so they lead a fresh first page.
    assert set(listed_ids(client, box.agent.auth, limit=len(arrived))) == set(arrived)
    assert len(listed_ids(client, box.agent.auth, limit=200)) == 8 + len(arrived)


def test_paging_while_another_thread_delivers(client, box, world):
    older = [box.deliver(build_mail(subject=f"Old {i}")) for i in range(10)]
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_delivering() -> None:
        try:
            while not stop.is_set():
                box.deliver(build_mail(subject="Arriving"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    worker = threading.Thread(target=keep_delivering)
    worker.start()
    try:
        seen = page_through(client, box.agent.auth, 2)
    finally:
        stop.set()
        worker.join()
    assert not failures, failures
    assert len(seen) == len(set(seen)), "a message was listed twice"
    assert set(older) <= set(seen), "an older message was skipped"
    assert [m for m in seen if m in older] == list(reversed(older))


def test_a_foreign_cursor_is_refused(client, box):
    box.deliver(build_mail())
    for cursor in ("not-a-cursor", "WzEsMl0", "evt_01J00000000000000000000000", "e30"):
        assert_error(client.get("/v1/messages/", query_string={"cursor": cursor}, headers=box.agent.auth),
                     400, "validation_error", field="cursor")


# --- changing -------------------------------------------------------------------------------
def test_mark_read_and_label(client, box):
    message_id = box.deliver(build_mail())
    auth = box.agent.auth
    resp = client.patch(f"/v1/messages/{message_id}/", json={"is_read": True}, headers=auth)
    assert resp.status_code == 200, resp.json
    MessageFull.model_validate(resp.json)
    assert resp.json["is_read"] is True and resp.json["labels"] == []
    resp = client.patch(f"/v1/messages/{message_id}/", json={"labels": [" urgent ", "billing", "urgent"]},
                        headers=auth)
    assert resp.json["labels"] == ["urgent", "billing"] and resp.json["is_read"] is True
    assert full(client, auth, message_id)["labels"] == ["urgent", "billing"]
    resp = client.patch(f"/v1/messages/{message_id}/", json={"is_read": False, "labels": []}, headers=auth)
    assert resp.json["is_read"] is False and resp.json["labels"] == []
    counts = client.get(f"/v1/inboxes/{box.inbox_id}/", headers=box.owner.auth).json
    assert (counts["message_count"], counts["unread_count"]) == (1, 1)

    for body in ({"is_read": "yes"}, {"is_read": 1}, {"labels": "urgent"}, {"labels": ["a\r\nBcc: x"]},
                 {"labels": [""]}, {"labels": ["x" * 101]}, {"starred": True}):
        assert_error(client.patch(f"/v1/messages/{message_id}/", json=body, headers=auth), 400, "validation_error")
    resp = client.patch(f"/v1/messages/{message_id}/", data="is_read=true", headers=auth,
                        content_type="application/x-www-form-urlencoded")
    assert_error(resp, 415, "unsupported_media_type")
    assert_error(client.patch(f"/v1/messages/{NO_ID}/", json={"is_read": True}, headers=auth), 404, "not_found")
    assert full(client, auth, message_id)["labels"] == []


def test_reading_a_message_completes_the_read_inbox_step(client, box, world):
    message_id = box.deliver(build_mail())
    me = client.get("/v1/users/me/", headers=box.agent.auth).json
    assert me["next_step"]["code"] == "read_inbox"
    full(client, box.agent.auth, message_id)  # looking does not mark it read
    assert client.get("/v1/users/me/", headers=box.agent.auth).json["next_step"]["code"] == "read_inbox"
    client.patch(f"/v1/messages/{message_id}/", json={"is_read": True}, headers=box.agent.auth)
    assert client.get("/v1/users/me/", headers=box.agent.auth).json["next_step"] is None

    # The owner's own steps: once something was sent, reading mail is the last one.
    owner = world.owner()
    inbox_id = world.inbox(owner)
    world.agent(owner, inbox_id, ["email:read"])
    add_outbound(world, inbox_id)
    received = deliver(world, inbox_id, build_mail())
    assert client.get("/v1/users/me/", headers=owner.auth).json["next_step"]["code"] == "read_inbox"
    resp = client.patch(f"/v1/messages/{received}/", query_string={"inbox_id": inbox_id}, json={"is_read": True},
                        headers=owner.auth)
    assert resp.status_code == 200, resp.json
    assert client.get("/v1/users/me/", headers=owner.auth).json["next_step"] is None


def _rows(store, message_id: str) -> dict[str, int]:
    with store.session() as db:
        out = {model.__tablename__: db.scalar(select(func.count()).select_from(model)
                                              .where(model.message_id == message_id))
               for model in (MessageRaw, Attachment, MessageSearch)}
        out["messages"] = db.scalar(select(func.count()).select_from(Message).where(Message.id == message_id))
        if db.get_bind().dialect.name == "sqlite":  # the FTS5 index itself: its entries for the message's words
            out["messages_fts"] = db.scalar(text(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'zebra' AND rowid IN "
                "(SELECT search_rowid FROM message_search WHERE message_id = :m) "
                "OR rowid NOT IN (SELECT search_rowid FROM message_search) AND messages_fts MATCH 'zebra'"),
                {"m": message_id})
            # and the index agrees with its content table, entry for entry
            db.execute(text("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"))
    return out


def test_delete_removes_the_message_everywhere(client, box, store):
    doomed = box.deliver(build_mail(subject="Shred me", text="zebra", attachments=(("a.bin", "application/zip", b"PK"),)))
    kept = box.deliver(build_mail(subject="Keep me", text="zebra"))
    attachment_id = full(client, box.agent.auth, doomed)["attachments"][0]["attachment_id"]
    assert all(count >= 1 for count in _rows(store, doomed).values())
    resp = client.delete(f"/v1/messages/{doomed}/", headers=box.agent.auth)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert set(_rows(store, doomed).values()) == {0}
    auth = box.agent.auth
    for path in (f"/v1/messages/{doomed}/", f"/v1/messages/{doomed}/raw/",
                 f"/v1/messages/{doomed}/attachments/{attachment_id}/"):
        assert_error(client.get(path, headers=auth), 404, "not_found")
    assert_error(client.delete(f"/v1/messages/{doomed}/", headers=auth), 404, "not_found")
    assert listed_ids(client, auth) == [kept]
    assert listed_ids(client, auth, q="zebra") == [kept]
    assert listed_ids(client, auth, q="shred") == []
    assert full(client, auth, kept)["subject"] == "Keep me"


def test_reading_labelling_and_deleting_append_events(client, world, store):
    """Every state change is in the event log (contract section 6), in order, for the inbox."""
    from appliance.services.mail import inbound as _inbound
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read", "email:write"])
    with store.session() as db:
        [message] = _inbound.receive(db, inbox_ids=[inbox_id], envelope_from="a@example.org", envelope_to={},
                                     raw=b"From: a@example.org\r\nSubject: ev\r\n\r\nbody\r\n")
    assert client.patch(f"/v1/messages/{message.id}/", json={"is_read": True, "labels": ["x"]},
                        headers=agent.auth).status_code == 200
    assert client.patch(f"/v1/messages/{message.id}/", json={"is_read": True},
                        headers=agent.auth).status_code == 200  # no change: no event
    assert client.delete(f"/v1/messages/{message.id}/", headers=agent.auth).status_code == 204
    listed = client.get("/v1/events/", headers=agent.auth,
                        query_string={"types": "message.received,message.updated,message.deleted"}).json["results"]
    assert [(e["type"], e["resource_id"]) for e in listed] == [
        ("message.received", message.id), ("message.updated", message.id), ("message.deleted", message.id)]
    assert listed[1]["payload"] == {"is_read": True, "labels": ["x"]}
