"""Contract section 5, sending (issue 5): POST /v1/messages/ through the real Flask app, delivered
by the real Worker to inboxes hosted here (local delivery, no SMTP hop).

Every test runs on SQLite and on PostgreSQL. Raw bytes are read back through GET …/raw/ and
parsed with the standard library's `email` package; DKIM signatures are checked with dkimpy
against the key the domain publishes. Remote delivery over SMTP is tested in
tests/integration/test_remote_mail.py.
"""
from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message as MailMessage
from email.utils import format_datetime, getaddresses, parsedate_to_datetime

import dkim
import pytest
from sqlalchemy import func, select, update

from appliance import clock
from appliance.models import DkimKey, Event, Inbox, Message, MessageRaw, OutboundQueue, OutboundRecipient
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.api.test_messages import full, listed
from tests.helpers import assert_error
from tests.world import Agent, Person, World

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 16 + b"\n%%EOF\n"
BLOB = bytes(range(255, -1, -1)) * 3  # every byte value, not valid UTF-8
HTML = ('<p>Numbers are <b>up</b>, see <a href="https://example.org/q" onclick="steal()">the report</a>.</p>'
        '<script>alert("owned")</script><img src="x" onerror="alert(2)">')
TEXT = "Numbers are up.\nSee the attached report.\n"
HOSTNAME = "mail.gentbox.test"  # tests/conftest.py's settings


# --- the world: a sending inbox and hosted recipients --------------------------------------
@dataclass
class Mailbox:
    owner: Person
    inbox_id: str
    address: str
    agent: Agent  # email:read (and email:send for senders)

    @property
    def auth(self) -> dict[str, str]:
        return self.agent.auth


def sending_box(world: World, owner: Person, address: str) -> Mailbox:
    """An inbox on a verified domain with an active DKIM key; its agent may send and read."""
    agent = world.sender(owner, address)
    return Mailbox(owner, agent.inbox_id, address, agent)


def receiving_box(world: World, owner: Person, address: str) -> Mailbox:
    """A hosted inbox without a signing key; its agent may read."""
    inbox_id = world.inbox(owner, address)
    return Mailbox(owner, inbox_id, address, world.agent(owner, inbox_id, ["email:read"]))


@pytest.fixture
def alice(world) -> Mailbox:
    return sending_box(world, world.owner(), "sales@alpha.test")


@pytest.fixture
def bob(world) -> Mailbox:
    """Another tenant's inbox on another hosted domain."""
    return receiving_box(world, world.owner(), "bob@beta.test")


@pytest.fixture
def worker(store, settings):
    w = Worker(store, settings)
    yield w
    w.close()


# --- helpers ----------------------------------------------------------------------------------
def send(client, auth: dict, *, headers: dict | None = None, **body):
    return client.post("/v1/messages/", json=body, headers={**auth, **(headers or {})})


def sent_ok(client, auth: dict, **body) -> dict:
    resp = send(client, auth, **body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert set(resp.json) == {"message_id", "thread_id", "status"} and resp.json["status"] == "queued"
    return resp.json


def raw_of(client, auth: dict, message_id: str) -> bytes:
    resp = client.get(f"/v1/messages/{message_id}/raw/", headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.data


def parsed(raw: bytes) -> MailMessage:
    return message_from_bytes(raw, policy=policy.default)


def head_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def header_names(raw: bytes) -> list[str]:
    return [name.lower() for name in message_from_bytes(raw, policy=policy.compat32).keys()]


def dkim_tags(raw: bytes) -> dict[str, str]:
    # the RSA signature, on top (an Ed25519 one follows since issue 26: tests/integration/test_dkim_ed25519.py)
    value = message_from_bytes(raw, policy=policy.compat32).get_all("DKIM-Signature")[0]
    tags = {}
    for item in "".join(value.split()).split(";"):
        if item:
            name, _, tag_value = item.partition("=")
            tags[name] = tag_value
    return tags


def published(world: World, domain: str):
    """dkimpy's DNS lookup answered with the TXT record the domain publishes (no other name)."""
    selector, public = world.signing_key(domain)

    def txt(name: bytes, timeout: float = 5) -> bytes:
        assert name.decode().rstrip(".") == f"{selector}._domainkey.{domain}"
        return f"v=DKIM1; k=rsa; p={public}".encode()
    return txt


def only_message(client, auth: dict, **query) -> dict:
    [summary] = listed(client, auth, **query)
    return full(client, auth, summary["message_id"])


def event_list(client, auth: dict) -> list[dict]:
    resp = client.get("/v1/events/", headers=auth, query_string={"limit": 200})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json["results"]


def event_types(client, auth: dict, resource_id: str | None = None) -> list[str]:
    return [e["type"] for e in event_list(client, auth) if resource_id in (None, e["resource_id"])]


def counts(store) -> dict[str, int]:
    with store.session() as db:
        return {model.__tablename__: db.scalar(select(func.count()).select_from(model))
                for model in (Message, MessageRaw, OutboundQueue, OutboundRecipient, Event)}


def queue_rows(store) -> list[tuple[str, str, int]]:
    """The queue rows of sent messages (not the appliance's own sign-up mail): domain, status, attempts."""
    with store.session() as db:
        rows = db.execute(select(OutboundQueue.domain, OutboundQueue.status, OutboundQueue.attempts)
                          .where(OutboundQueue.message_id.is_not(None)).order_by(OutboundQueue.domain))
        return [tuple(row) for row in rows]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pause(client, mailbox: Mailbox, status: str = "paused") -> None:
    resp = client.patch(f"/v1/inboxes/{mailbox.inbox_id}/", json={"status": status}, headers=mailbox.owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- 1. send, queue, deliver, sign, announce --------------------------------------------------
def test_a_send_to_hosted_inboxes_is_queued_then_delivered_signed_and_announced(client, world, store, worker,
                                                                                alice, bob):
    carol = receiving_box(world, alice.owner, "carol@gamma.test")  # same tenant, another domain
    answer = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test", "name": "Bob B"}],
                     cc=[{"email": "carol@gamma.test"}], subject="Quarterly report", text_body=TEXT,
                     html_body=HTML, attachments=[
                         {"filename": "report.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)},
                         {"filename": "data.bin", "content_base64": b64(BLOB)}])
    message_id = answer["message_id"]

    # Queued: stored in the sending inbox, one recipient entry each, nothing delivered yet.
    before = full(client, alice.auth, message_id)
    assert before["direction"] == "outbound" and before["status"] == "queued"
    assert before["thread_id"] == answer["thread_id"] and before["inbox_id"] == alice.inbox_id
    assert [(d["recipient"], d["status"], d["attempts"], d["smtp_reply"]) for d in before["delivery"]] == [
        ("bob@beta.test", "queued", 0, None), ("carol@gamma.test", "queued", 0, None)]
    assert all(d["next_attempt_at"] and d["last_attempt_at"] is None for d in before["delivery"])
    assert listed(client, bob.auth) == [] and listed(client, carol.auth) == []
    assert event_types(client, alice.auth, message_id) == ["message.sent"]
    assert queue_rows(store) == [("beta.test", "queued", 0), ("gamma.test", "queued", 0)]  # one per domain

    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "done", 1), ("gamma.test", "done", 1)]

    # Sent: every recipient delivered, with the local "SMTP" reply.
    after = full(client, alice.auth, message_id)
    for entry in after["delivery"]:
        assert entry["status"] == "delivered" and entry["attempts"] == 1, entry
        assert entry["smtp_reply"].startswith("250 ") and entry["last_attempt_at"] and entry["next_attempt_at"] is None
    sent_raw = raw_of(client, alice.auth, message_id)
    assert after["headers"]["Message-ID"] == parsed(sent_raw)["Message-ID"]

    for box in (bob, carol):
        got = only_message(client, box.auth)
        assert got["direction"] == "inbound" and got["subject"] == "Quarterly report"
        assert got["from"] == {"email": "sales@alpha.test", "name": "Agent"}
        assert got["to"] == [{"email": "bob@beta.test", "name": "Bob B"}]
        assert got["cc"] == [{"email": "carol@gamma.test", "name": ""}]
        assert got["headers"]["Message-ID"] == after["headers"]["Message-ID"]
        assert got["text_body"].replace("\r\n", "\n") == TEXT
        assert "the report" in got["html_body"] and "<b>up</b>" in got["html_body"]
        for dangerous in ("<script", "onclick", "onerror", "alert("):
            assert dangerous not in got["html_body"], got["html_body"]
        assert [(a["filename"], a["content_type"], a["size"]) for a in got["attachments"]] == [
            ("report.pdf", "application/pdf", len(PDF)), ("data.bin", "application/octet-stream", len(BLOB))]
        for attachment, data in zip(got["attachments"], (PDF, BLOB)):
            resp = client.get(f"/v1/messages/{got['message_id']}/attachments/{attachment['attachment_id']}/",
                              headers=box.auth)
            assert resp.status_code == 200 and resp.data == data

        # The received copy is the signed message, byte for byte after our trace header.
        raw = raw_of(client, box.auth, got["message_id"])
        assert raw.endswith(sent_raw)
        tags = dkim_tags(raw)
        assert tags["v"] == "1" and tags["d"] == "alpha.test" and tags["a"] == "rsa-sha256"
        assert tags["c"] == "relaxed/relaxed" and "l" not in tags
        signed = tags["h"].lower().split(":")
        # Every field of the signed set is listed once more than it occurs (issue 14.3: oversigned,
        # so none can be added after signing), absent ones once.
        for field in ("from", "subject", "to", "cc", "date", "message-id", "mime-version", "content-type"):
            assert signed.count(field) == 2, (field, signed)
        assert signed.count("reply-to") == 1 and "x" in tags
        assert dkim.verify(raw, dnsfunc=published(world, "alpha.test"))
        # The worker's enrichment (issue 21) judges it after storage: message.enriched may follow.
        assert [t for t in event_types(client, box.auth, got["message_id"]) if t != "message.enriched"] \
            == ["message.received"]

    mine = [e for e in event_list(client, alice.auth) if e["resource_id"] == message_id]
    assert [e["type"] for e in mine] == ["message.sent", "message.delivered", "message.delivered"]  # one a row
    assert mine[0]["payload"]["recipients"] == ["bob@beta.test", "carol@gamma.test"]
    assert sorted(r for e in mine[1:] for r in e["payload"]["recipients"]) == ["bob@beta.test", "carol@gamma.test"]
    worker.run_until_idle()  # nothing left, nothing delivered twice
    assert queue_rows(store) == [("beta.test", "done", 1), ("gamma.test", "done", 1)]
    assert len(listed(client, bob.auth)) == 1
    # Last, so that every check above runs first: see test_a_message_to_several_hosted_domains_ends_sent.
    assert full(client, alice.auth, message_id)["status"] == "sent"


# --- 2. Bcc, From, Message-ID, Date -----------------------------------------------------------
def test_bcc_is_delivered_but_never_shown_and_from_message_id_date_are_the_senders(client, world, worker,
                                                                                  alice, bob):
    resp = client.patch(f"/v1/inboxes/{alice.inbox_id}/", json={"display_name": "Zoë Sales"},
                        headers=alice.owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    dave = receiving_box(world, world.owner(), "dave@delta.test")  # Bcc on another domain
    erin = receiving_box(world, bob.owner, "erin@beta.test")  # Bcc on the To recipient's domain
    started = clock.utcnow()
    answer = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test"}],
                     bcc=[{"email": "dave@delta.test", "name": "Dave Hidden"}, {"email": "erin@beta.test"}],
                     subject="Secret list", text_body="Hello.")
    sent_raw = raw_of(client, alice.auth, answer["message_id"])
    worker.run_until_idle()

    sent = full(client, alice.auth, answer["message_id"])
    assert sent["to"] == [{"email": "bob@beta.test", "name": ""}] and sent["cc"] == []
    assert {d["status"] for d in sent["delivery"]} == {"delivered"}
    assert {d["recipient"] for d in sent["delivery"]} == {"bob@beta.test", "dave@delta.test", "erin@beta.test"}
    copies = {box.address: only_message(client, box.auth) for box in (bob, dave, erin)}
    for box in (bob, dave, erin):
        raw = raw_of(client, box.auth, copies[box.address]["message_id"])
        for name, raw_bytes in (("sent", sent_raw), (box.address, raw)):
            assert "bcc" not in header_names(raw_bytes), name
            head = head_of(raw_bytes)
            for hidden in (b"dave@delta.test", b"erin@beta.test", b"Dave Hidden"):
                assert hidden not in head, (name, hidden)
        assert copies[box.address]["to"] == [{"email": "bob@beta.test", "name": ""}]
        assert copies[box.address]["cc"] == []

    head = parsed(sent_raw)
    assert head["From"].addresses[0].display_name == "Zoë Sales"
    assert head["From"].addresses[0].addr_spec == "sales@alpha.test"
    assert copies["bob@beta.test"]["from"] == {"email": "sales@alpha.test", "name": "Zoë Sales"}
    message_id = head["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@alpha.test>") and message_id.count("@") == 1
    date = parsedate_to_datetime(head["Date"])
    assert date.tzinfo is not None and abs(date - started) < dt.timedelta(minutes=1)
    assert head.get_all("Date") == [head["Date"]] and head.get_all("Message-ID") == [message_id]
    # Last (two queue rows, delta.test and beta.test): see test_a_message_to_several_hosted_domains_ends_sent.
    assert full(client, alice.auth, answer["message_id"])["status"] == "sent"


def test_a_message_to_several_hosted_domains_ends_sent(client, world, worker, alice):
    """Each recipient domain is its own queue row, recorded by its own worker thread; the message's
    status must be `sent` once all of them are delivered, however the recordings interleave."""
    domains = ("beta.test", "gamma.test", "delta.test", "epsilon.test")
    for domain in domains:
        receiving_box(world, alice.owner, f"x@{domain}")
    ids = [sent_ok(client, alice.auth, to=[{"email": f"x@{d}"} for d in domains], subject=f"Round {i}",
                   text_body="Hi.")["message_id"] for i in range(16)]
    worker.run_until_idle()
    outcome = {}
    for message_id in ids:
        sent = full(client, alice.auth, message_id)
        outcome[message_id] = (sent["status"], [d["status"] for d in sent["delivery"]])
    assert all(d == ["delivered"] * 4 for _, d in outcome.values()), outcome
    wrong = {m: o for m, o in outcome.items() if o[0] != "sent"}
    assert not wrong, f"{len(wrong)} of {len(ids)} fully delivered messages are not 'sent': {wrong}"


# --- 3. replies and threads -------------------------------------------------------------------
def inbound_mail(*, subject: str, message_id: str, reply_to: str | None = None,
                 references: str | None = None, to: str = "sales@alpha.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Customer <alice@customer.example>"
    msg["To"] = to
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc))
    msg["Message-ID"] = message_id
    if references:
        msg["In-Reply-To"] = references.split()[-1]
        msg["References"] = references
    msg.set_content("Could you send a quote?")
    return msg.as_bytes(policy=policy.SMTP)


def receive(world: World, mailbox: Mailbox, raw: bytes) -> str:
    """Store raw for the inbox as the SMTP listener does."""
    with world.store.session() as db:
        [message] = inbound.receive(db, inbox_ids=[mailbox.inbox_id], raw=raw,
                                    envelope_from="alice@customer.example",
                                    envelope_to={mailbox.inbox_id: mailbox.address}, client_ip="192.0.2.1")
        return message.id


@pytest.mark.parametrize(("subject", "reply_to", "expected_to", "expected_subject"), [
    ("Quote", "Desk <desk@customer.example>", [("Desk", "desk@customer.example")], "Re: Quote"),
    ("Re: Quote", None, [("Alice Customer", "alice@customer.example")], "Re: Quote"),
    ("RE: Quote", None, [("Alice Customer", "alice@customer.example")], "RE: Quote"),
    ("re:Quote", "a@customer.example, b@customer.example",
     [("", "a@customer.example"), ("", "b@customer.example")], "re:Quote"),
])
def test_a_reply_to_received_mail_takes_recipients_subject_and_threading_from_it(
        client, world, alice, subject, reply_to, expected_to, expected_subject):
    references = "<r0@customer.example> <r1@customer.example>"
    original_id = receive(world, alice, inbound_mail(subject=subject, message_id="<q1@customer.example>",
                                                     reply_to=reply_to, references=references))
    original = full(client, alice.auth, original_id)

    answer = sent_ok(client, alice.auth, reply_to_message_id=original_id, text_body="Here it is.")
    assert answer["thread_id"] == original["thread_id"]
    head = parsed(raw_of(client, alice.auth, answer["message_id"]))
    assert getaddresses(head.get_all("To")) == expected_to
    assert head["Subject"] == expected_subject
    assert head["In-Reply-To"] == "<q1@customer.example>"
    assert head["References"].split() == ["<r0@customer.example>", "<r1@customer.example>", "<q1@customer.example>"]
    assert "Cc" not in head

    reply = full(client, alice.auth, answer["message_id"])
    assert reply["headers"]["In-Reply-To"] == "<q1@customer.example>"
    assert reply["headers"]["References"] == "<r0@customer.example> <r1@customer.example> <q1@customer.example>"
    thread = client.get(f"/v1/messages/threads/{original['thread_id']}/", headers=alice.auth).json
    assert thread["message_count"] == 2
    assert [m["message_id"] for m in thread["messages"]] == [original_id, answer["message_id"]]


def test_a_reply_may_name_its_own_recipients_and_subject(client, world, alice):
    original_id = receive(world, alice, inbound_mail(subject="Quote", message_id="<q2@customer.example>"))
    answer = sent_ok(client, alice.auth, reply_to_message_id=original_id, to=[{"email": "boss@customer.example"}],
                     subject="Your quote, revised", text_body="Here.")
    head = parsed(raw_of(client, alice.auth, answer["message_id"]))
    assert getaddresses(head.get_all("To")) == [("", "boss@customer.example")]
    assert head["Subject"] == "Your quote, revised" and head["In-Reply-To"] == "<q2@customer.example>"
    assert answer["thread_id"] == full(client, alice.auth, original_id)["thread_id"]


def test_a_conversation_between_hosted_inboxes_is_one_thread_on_each_side(client, world, worker, alice):
    bob = sending_box(world, world.owner(), "bob@beta.test")
    first = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test"}], subject="Plan", text_body="Shall we?")
    worker.run_until_idle()
    bob_first = only_message(client, bob.auth)

    second = sent_ok(client, bob.auth, reply_to_message_id=bob_first["message_id"], text_body="Yes.")
    assert second["thread_id"] == bob_first["thread_id"]
    worker.run_until_idle()
    alice_second = only_message(client, alice.auth, direction="inbound")
    assert alice_second["thread_id"] == first["thread_id"]
    assert alice_second["subject"] == "Re: Plan" and alice_second["from"]["email"] == "bob@beta.test"

    third = sent_ok(client, alice.auth, reply_to_message_id=alice_second["message_id"], text_body="Great.")
    assert third["thread_id"] == first["thread_id"]
    worker.run_until_idle()

    ids = [full(client, alice.auth, m)["headers"]["Message-ID"] for m in
           (first["message_id"], alice_second["message_id"], third["message_id"])]
    last_head = parsed(raw_of(client, alice.auth, third["message_id"]))
    assert last_head["Subject"] == "Re: Plan" and last_head["To"].addresses[0].addr_spec == "bob@beta.test"
    assert last_head["In-Reply-To"] == ids[1] and last_head["References"].split() == ids[:2]
    for box, directions in ((alice, ["outbound", "inbound", "outbound"]), (bob, ["inbound", "outbound", "inbound"])):
        [thread] = client.get("/v1/messages/threads/", headers=box.auth).json["results"]
        shown = client.get(f"/v1/messages/threads/{thread['thread_id']}/", headers=box.auth).json
        assert shown["message_count"] == 3
        assert [m["direction"] for m in shown["messages"]] == directions
        assert [m["headers"]["Message-ID"] for m in shown["messages"]] == ids
        assert {m["status"] for m in shown["messages"] if m["direction"] == "outbound"} == {"sent"}


def test_a_reply_to_another_inboxs_message_is_404_and_stores_nothing(client, world, store, alice, bob):
    neighbour = sending_box(world, alice.owner, "ops@alpha.test")  # same tenant and domain
    foreign = sending_box(world, bob.owner, "other@beta.test")  # another tenant
    original_id = receive(world, alice, inbound_mail(subject="Quote", message_id="<q3@customer.example>"))
    before = counts(store)
    for sender in (neighbour, foreign):
        assert_error(send(client, sender.auth, reply_to_message_id=original_id, text_body="Hi"),
                     404, "not_found", field="reply_to_message_id")
        assert_error(send(client, sender.auth, reply_to_message_id="msg_01J00000000000000000000000",
                          text_body="Hi"), 404, "not_found", field="reply_to_message_id")
    assert counts(store) == before


# --- 4. header injection ------------------------------------------------------------------------
VICTIM = "victim@x.test"
Q_LF = "=?utf-8?q?hi=0ABcc:_victim@x.test?="  # CVE-2024-6923, exactly
Q_CR = "=?utf-8?q?hi=0DBcc:_victim@x.test?="
Q_CRLF = "=?UTF-8?Q?hi=0D=0ABcc:_victim@x.test?="
B_CRLF = f"=?utf-8?b?{b64(b'hi' + bytes([13, 10]) + b'Bcc: victim@x.test')}?="
B_LF = f"=?utf-8?B?{b64(b'hi' + bytes([10]) + b'Bcc: victim@x.test')}?="
LATIN = "=?iso-8859-1?q?hi=0ABcc:_victim@x.test?="
CRLF = "\r\n"


def _with(path: str, value: str) -> dict:
    """A request using every field, with the one at path (subject, to[0].name, …) replaced."""
    body = {"to": [{"email": "bob@beta.test", "name": "Bob"}], "cc": [{"email": "carol@gamma.test", "name": "Carol"}],
            "bcc": [{"email": "dave@delta.test", "name": "Dave"}], "reply_to": [{"email": "desk@alpha.test"}],
            "subject": "Hello", "text_body": "Hi.", "html_body": "<p>Hi.</p>",
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": b64(b"x")}]}
    if "[" not in path:
        body[path] = value
    else:
        head, rest = path.split("[", 1)
        index, key = rest.split("].", 1)
        body[head][int(index)][key] = value
    return body


INJECTIONS = [
    ("subject", f"hi{CRLF}Bcc: {VICTIM}"),
    ("subject", f"hi\nBcc: {VICTIM}"),
    ("subject", f"hi\rBcc: {VICTIM}"),
    ("subject", f"hi\u2028Bcc: {VICTIM}"),
    ("subject", f"hi\x85Bcc: {VICTIM}"),
    ("to[0].name", f"Bob{CRLF}Bcc: {VICTIM}"),
    ("to[0].email", f"bob@beta.test{CRLF}Bcc: {VICTIM}"),
    ("to[0].email", f"bob@beta.test\nBcc: {VICTIM}"),
    ("cc[0].email", f"carol@gamma.test{CRLF}Bcc: {VICTIM}"),
    ("cc[0].name", f"Carol\rBcc: {VICTIM}"),
    ("bcc[0].email", f"dave@delta.test\nBcc: {VICTIM}"),
    ("bcc[0].name", f"Dave{CRLF}X-Evil: 1"),
    ("reply_to[0].email", f"desk@alpha.test{CRLF}Bcc: {VICTIM}"),
    ("attachments[0].filename", f"a.txt{CRLF}Bcc: {VICTIM}"),
    ("attachments[0].content_type", f"text/plain{CRLF}Bcc: {VICTIM}"),
    # RFC 2047 encoded words that decode to a line break (the 3.11.7 email package would fold
    # them into a new header: CVE-2024-6923).
    ("subject", Q_LF),
    ("subject", Q_CR),
    ("subject", Q_CRLF),
    ("subject", B_CRLF),
    ("subject", B_LF),
    ("subject", LATIN),
    ("subject", f"Invoice {Q_LF} due"),
    ("to[0].name", Q_LF),
    ("to[0].name", Q_CR),
    ("to[0].name", B_CRLF),
    ("to[0].name", f"Bob {B_LF}"),
    ("cc[0].name", Q_LF),
    ("bcc[0].name", B_CRLF),
    ("attachments[0].filename", "=?utf-8?q?a=0ABcc:_victim@x.test?=.txt"),
    ("to[0].email", "=?utf-8?q?a=0ABcc:_victim@x.test?=@beta.test"),
]


def test_header_injection_is_refused_naming_the_field_and_nothing_is_stored(client, store, alice, subtests):
    """One world for all the cases (each a subtest): nothing any of them sends is stored or queued."""
    before = counts(store)
    for field, value in INJECTIONS:
        with subtests.test(field=field, value=value):
            assert_error(send(client, alice.auth, **_with(field, value)), 400, "validation_error", field=field)
            assert counts(store) == before


def test_the_injection_base_request_itself_is_accepted(client, alice):
    """The control for the cases above: only the one bad value makes them fail."""
    sent_ok(client, alice.auth, **_with("subject", "A fine subject"))


# --- 5. validation ------------------------------------------------------------------------------
def _many(n: int, domain: str = "remote.test") -> list[dict]:
    return [{"email": f"r{i}@{domain}"} for i in range(n)]


BAD_ADDRESSES = ["bob.beta.test", "bob smith@beta.test", "bob@beta test", '"a@b"@beta.test', "A <a@b.c>",
                 "bob@", "@beta.test", "bob@localhost", "bob@@beta.test", "bob@beta..test", "bob@-beta.test",
                 "b(comment)@beta.test", "bób@beta.test"]
INVALID = [
    ({"subject": "Hi", "text_body": "Hi."}, "to"),
    ({"to": [], "cc": [], "bcc": [], "text_body": "Hi."}, "to"),
    ({"to": [{"email": "bob@beta.test"}]}, "text_body"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": "", "html_body": ""}, "text_body"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": None, "html_body": None}, "text_body"),
    *[({"to": [{"email": "bob@beta.test"}, {"email": a}], "text_body": "Hi."}, "to[1].email") for a in BAD_ADDRESSES],
    ({"to": [{"email": "bob@beta.test"}], "cc": [{"email": "bob.beta.test"}], "text_body": "Hi."}, "cc[0].email"),
    ({"to": [{"email": "bob@beta.test"}], "bcc": [{"email": "A <a@b.c>"}], "text_body": "Hi."}, "bcc[0].email"),
    ({"to": [{"email": "bob@beta.test"}], "reply_to": [{"email": "no at"}], "text_body": "Hi."},
     "reply_to[0].email"),
    ({"to": _many(101), "text_body": "Hi."}, "to"),
    ({"to": _many(60), "cc": _many(41, "other.test"), "text_body": "Hi."}, "to"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": "Hi.", "attachments": [
        {"filename": "a.bin", "content_base64": "not base64!!"}]}, "attachments[0].content_base64"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": "Hi.", "attachments": [
        {"filename": "a.bin", "content_base64": "QUJ"}]}, "attachments[0].content_base64"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": "Hi.", "attachments": [
        {"filename": "../etc/passwd", "content_base64": "QUJD"}]}, "attachments[0].filename"),
    ({"to": [{"email": "bob@beta.test"}], "text_body": "Hi.", "attachments": [
        {"filename": "a.pdf", "content_type": "pdf", "content_base64": "QUJD"}]}, "attachments[0].content_type"),
]


def test_invalid_sends_are_400_naming_the_field_and_store_nothing(client, store, alice, subtests):
    before = counts(store)
    for body, field in INVALID:
        with subtests.test(field=field, body=str(body)[:120]):
            assert_error(send(client, alice.auth, **body), 400, "validation_error", field=field)
            assert counts(store) == before


def test_one_hundred_distinct_recipients_are_accepted_duplicates_counted_once(client, store, alice):
    to = _many(50) + _many(10)  # the ten repeats are one recipient each
    answer = sent_ok(client, alice.auth, to=to, cc=_many(30, "other.test"), bcc=_many(20, "third.test"),
                     text_body="Hi all.")
    delivery = full(client, alice.auth, answer["message_id"])["delivery"]
    assert len(delivery) == 100 and len({d["recipient"] for d in delivery}) == 100
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(OutboundQueue)) == 3  # one row per domain


def test_bodies_with_line_breaks_are_fine(client, alice):
    text = "Line one\r\nLine two\nLine three\rLine four\n\n-- \nAgent\n"
    html = "<p>one</p>\n<p>two</p>\r\n<p>three</p>"
    answer = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test"}], subject="Lines",
                     text_body=text, html_body=html)
    sent = full(client, alice.auth, answer["message_id"])
    assert "Line one\nLine two\nLine three" in sent["text_body"].replace("\r\n", "\n")
    assert "<p>two</p>" in sent["html_body"]
    assert header_names(raw_of(client, alice.auth, answer["message_id"])).count("subject") == 1


def test_a_message_over_the_size_limit_is_413_and_stores_nothing(make_settings, make_app, world_for):
    app = make_app(make_settings(max_message_bytes=50_000))
    client = app.test_client()
    world = world_for(client)
    sender = sending_box(world, world.owner(), "sales@alpha.test")
    store = app.extensions["gentbox"]
    before = counts(store)
    for size in (60_000, 40_000):  # over the limit itself; under it, but not once base64-encoded
        attachment = {"filename": "big.bin", "content_base64": b64(bytes(size))}
        assert_error(send(client, sender.auth, to=[{"email": "bob@beta.test"}], text_body="Big.",
                          attachments=[attachment]), 413, "payload_too_large")
        assert counts(store) == before
    sent_ok(client, sender.auth, to=[{"email": "bob@beta.test"}], text_body="Fits.",
            attachments=[{"filename": "ok.bin", "content_base64": b64(bytes(30_000))}])


# --- 6. who may send --------------------------------------------------------------------------
SIMPLE = {"to": [{"email": "bob@beta.test"}], "subject": "Hi", "text_body": "Hi."}


def test_a_token_without_email_send_is_403(client, world, store, alice):
    reader = world.agent(alice.owner, alice.inbox_id, ["email:read", "email:write"])
    before = counts(store)
    assert_error(send(client, reader.auth, **SIMPLE), 403, "insufficient_scope")
    assert counts(store) == before


def test_a_token_whose_sends_need_approval_gets_202_and_the_message_is_held_not_queued(
        client, world, store, worker, alice, bob):
    held = world.agent(alice.owner, alice.inbox_id, ["email:send", "email:read"], requires_approval=["email:send"])
    before = counts(store)
    resp = send(client, held.auth, **SIMPLE)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert set(resp.json) == {"queued", "approval_id"} and resp.json["queued"] is True
    assert resp.json["approval_id"].startswith("apr_")
    after = counts(store)
    # Stored (message, raw, the approval.requested event), but nothing queued and no message.sent.
    assert after["messages"] == before["messages"] + 1 and after["message_raw"] == before["message_raw"] + 1
    assert after["outbound_queue"] == before["outbound_queue"] and queue_rows(store) == []
    [message] = listed(client, alice.auth)
    assert message["status"] == "held" and message["sent_at"] is None
    assert "DKIM-Signature" not in raw_of(client, alice.auth, message["message_id"]).decode()
    mail_events = [t for t in event_types(client, alice.auth) if not t.startswith(("token.", "inbox."))]
    assert mail_events == ["approval.requested"]
    worker.run_until_idle()
    assert listed(client, bob.auth) == []  # approvals are tested in tests/api/test_approvals.py


def test_a_paused_inbox_sends_nothing_409_until_resumed(client, store, alice):
    pause(client, alice)
    before = counts(store)
    assert_error(send(client, alice.auth, **SIMPLE), 409, "conflict")
    assert counts(store) == before
    pause(client, alice, "active")
    sent_ok(client, alice.auth, **SIMPLE)


def test_a_domain_without_an_active_dkim_key_is_409(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner, "sales@nokey.test")
    with store.session() as db:  # a domain's first key comes with it (add_domain): retire it
        db.execute(update(DkimKey).where(DkimKey.domain_id == db.get(Inbox, inbox_id).domain_id)
                   .values(status="retired"))
    agent = world.agent(owner, inbox_id, ["email:send", "email:read"])
    before = counts(store)
    assert_error(send(client, agent.auth, **SIMPLE), 409, "conflict")
    assert counts(store) == before


def test_a_session_token_sends_for_an_inbox_it_names(client, world, worker, alice, bob):
    answer = sent_ok(client, alice.owner.auth, inbox_id=alice.inbox_id, **SIMPLE)
    assert full(client, alice.auth, answer["message_id"])["inbox_id"] == alice.inbox_id
    worker.run_until_idle()
    assert only_message(client, bob.auth)["from"]["email"] == "sales@alpha.test"
    assert_error(send(client, alice.owner.auth, **SIMPLE), 400, "validation_error", field="inbox_id")
    assert_error(send(client, bob.owner.auth, inbox_id=alice.inbox_id, **SIMPLE), 404, "not_found")
    assert_error(send(client, alice.auth, inbox_id=bob.inbox_id, **SIMPLE), 403, "inbox_mismatch")


# --- 7. Idempotency-Key -------------------------------------------------------------------------
def test_a_retried_send_with_the_same_idempotency_key_is_sent_once(client, store, worker, alice, bob):
    key = {"Idempotency-Key": "send-0001"}
    first = send(client, alice.auth, headers=key, **SIMPLE)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = send(client, alice.auth, headers=key, **SIMPLE)
    assert again.status_code == 201 and again.json == first.json
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert counts(store)["messages"] == 1 and counts(store)["outbound_queue"] == 1
    assert counts(store)["outbound_recipients"] == 1

    assert_error(send(client, alice.auth, headers=key, **{**SIMPLE, "subject": "Other"}), 409,
                 "idempotency_conflict")
    assert counts(store)["messages"] == 1
    worker.run_until_idle()
    assert len(listed(client, bob.auth)) == 1
    # After delivery the replay still answers the same, and sends nothing more.
    assert send(client, alice.auth, headers=key, **SIMPLE).json == first.json
    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "done", 1)] and len(listed(client, bob.auth)) == 1
    other = sent_ok(client, alice.auth, headers={"Idempotency-Key": "send-0002"}, **SIMPLE)
    assert other["message_id"] != first.json["message_id"]


# --- 8. local delivery refusals: bounces and deferrals -----------------------------------------
def test_an_unknown_hosted_address_bounces_with_a_dsn_in_the_same_pass(client, store, worker, alice, bob):
    answer = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test"}], cc=[{"email": "nobody@beta.test"}],
                     subject="Hello both", text_body="Hi.")
    worker.run_once()  # one pass
    assert queue_rows(store) == [("beta.test", "done", 1)]  # one row for the domain: both recipients

    sent = full(client, alice.auth, answer["message_id"])
    assert sent["status"] == "partially_delivered"
    bob_entry, nobody = sent["delivery"]
    assert bob_entry["recipient"] == "bob@beta.test" and bob_entry["status"] == "delivered"
    assert nobody["recipient"] == "nobody@beta.test" and nobody["status"] == "bounced"
    assert nobody["smtp_reply"].startswith("550 ") and "5.1.1" in nobody["smtp_reply"]
    assert nobody["next_attempt_at"] is None and nobody["attempts"] == 1
    assert len(listed(client, bob.auth)) == 1

    dsn = only_message(client, alice.auth, direction="inbound")
    assert dsn["from"]["email"].lower() == f"mailer-daemon@{HOSTNAME}"
    assert dsn["thread_id"] == answer["thread_id"]
    assert dsn["headers"]["In-Reply-To"] == sent["headers"]["Message-ID"]
    report = parsed(raw_of(client, alice.auth, dsn["message_id"]))
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{HOSTNAME}"
    assert report["To"].addresses[0].addr_spec == "sales@alpha.test"
    parts = {part.get_content_type(): part for part in report.iter_parts()}
    assert set(parts) >= {"text/plain", "message/delivery-status", "text/rfc822-headers"}
    status = parts["message/delivery-status"]
    blocks = status.get_payload()  # per-message fields, then one block per recipient
    assert blocks[0]["Reporting-MTA"] == f"dns; {HOSTNAME}"
    [recipient] = blocks[1:]
    assert recipient["Final-Recipient"] == "rfc822; nobody@beta.test"
    assert recipient["Action"] == "failed" and recipient["Status"] == "5.1.1"
    assert "bob@beta.test" not in status.as_string()
    assert event_types(client, alice.auth, answer["message_id"]) == [
        "message.sent", "message.delivered", "message.bounced"]
    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "done", 1)]  # nothing retried

    # The returned headers are the third part's body, after its own header block and a blank line.
    returned = parts["text/rfc822-headers"]
    assert [name.lower() for name in returned.keys()] == ["content-type"], returned.keys()
    original_headers = returned.get_content()
    assert sent["headers"]["Message-ID"] in original_headers and "DKIM-Signature" not in original_headers


def test_a_message_whose_only_recipient_is_unknown_is_bounced(client, worker, alice, bob):
    answer = sent_ok(client, alice.auth, to=[{"email": "ghost@beta.test"}], subject="Anyone?", text_body="Hi.")
    worker.run_until_idle()
    sent = full(client, alice.auth, answer["message_id"])
    assert sent["status"] == "bounced" and [d["status"] for d in sent["delivery"]] == ["bounced"]
    assert only_message(client, alice.auth, direction="inbound")["thread_id"] == answer["thread_id"]


def test_a_paused_hosted_inbox_defers_then_receives_after_the_retry_delay(client, store, worker, settings, alice, bob):
    pause(client, bob)
    answer = sent_ok(client, alice.auth, to=[{"email": "bob@beta.test"}], subject="Later", text_body="Hi.")
    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "deferred", 1)]

    sent = full(client, alice.auth, answer["message_id"])
    [entry] = sent["delivery"]
    assert sent["status"] == "sending" and entry["status"] == "deferred" and entry["attempts"] == 1
    assert entry["smtp_reply"].startswith("450 ") and "4.2.1" in entry["smtp_reply"]
    delay = when(entry["next_attempt_at"]) - when(entry["last_attempt_at"])
    assert abs(delay - dt.timedelta(seconds=settings.retry_schedule[0])) <= dt.timedelta(seconds=1)
    assert event_types(client, alice.auth, answer["message_id"]) == ["message.sent", "message.deferred"]
    assert listed(client, alice.auth, direction="inbound") == []  # no DSN, no delay notice yet

    pause(client, bob, "active")
    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "deferred", 1)]  # not due yet
    clock.advance(dt.timedelta(seconds=settings.retry_schedule[0] + 1))
    worker.run_until_idle()
    assert queue_rows(store) == [("beta.test", "done", 2)]

    sent = full(client, alice.auth, answer["message_id"])
    [entry] = sent["delivery"]
    assert sent["status"] == "sent" and entry["status"] == "delivered" and entry["attempts"] == 2
    assert entry["next_attempt_at"] is None and entry["smtp_reply"].startswith("250 ")
    assert only_message(client, bob.auth)["subject"] == "Later"
    assert event_types(client, alice.auth, answer["message_id"]) == [
        "message.sent", "message.deferred", "message.delivered"]
