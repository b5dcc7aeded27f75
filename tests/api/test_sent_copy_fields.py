"""The sent copy's fields come from the composed message itself (issue 26 point 1: compose knows
them, so the signed bytes are not parsed back): field by field they must be what parsing the
signed bytes gives (mime.parse_message is the oracle), over many kinds of message."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import random

import pytest
from sqlalchemy import select

from appliance.models import Domain, Inbox, Message, MessageRaw
from appliance.services.domains import dkim
from appliance.services.mail import compose, message_rows, outbound
from appliance.services.mail.mime import parse_message

NOW = dt.datetime(2026, 12, 6, 17, 0, tzinfo=dt.timezone.utc)
R = compose.Recipient
NAMES = ["", "Ann", "Jörg Müller", "O'Brien, Pat", 'Say "hi"', "Dr. J. Doe (work)", "back\\slash", "a@b",
         "李小龍", "émoji 🎉 name", "  spaced   out  ", "semi;colon: <angle> [square]", "x" * 150, "Ünïcødé, Ltd."]
SUBJECTS = ["hello", "", "Grüße aus Köln", "   leading and trailing   ", "tab\tinside", "🎉" * 40,
            "a long subject line " * 12, "Re: already a reply", "quotes \"and\" (parens) <angles>", "日本語の件名です",
            "mixed ascii and ünïcode words, many of them, to make the folder work hard on a line " * 3]
TEXTS = ["x", "line one\nline two\n", "x" * 5000, "no newline at end", "crlf\r\nline\r\nends\r\n", "bare\rcr",
         "unicode: Grüße 🎉 日本語\n", "y" * 1200 + "\n" + "z" * 40, ".\n.leading dot\nFrom the start\n",
         "trailing spaces   \n\n\n", "ü" * 700 + "\nshort\n" + "€ " * 300, "form\x0cfeed and vertical\x0btab", "\u2028separators\u2029\x85", "=3D qp-like =\n"]
HTMLS = [None, "<p>Hello <b>there</b></p>", "<html><head><title>T</title><script>alert(1)</script></head>"
         "<body><a href=\"https://x.example/\">link</a> ünï</body></html>", "<div>" + "w " * 3000 + "</div>"]
FILES = [("report.pdf", "application/pdf"), ("naïve résumé.txt", "text/plain"), ("data.csv", "text/csv"),
         ("a b; c=d.png", "image/png"), ("quote\"d.bin", "application/octet-stream"), ("x" * 200 + ".zip", "application/zip"),
         ("日本語.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]


def _attachment(name: str, content_type: str, size: int) -> dict:
    content = bytes(random.Random(size).randrange(256) for _ in range(size))
    return {"filename": name, "content_type": content_type, "content_base64": base64.b64encode(content).decode()}


def _requests() -> list[compose.SendRequest]:
    """Hand-picked edge cases, then random mixtures of them."""
    cases = [compose.SendRequest(to=[R("someone@example.org")], subject=s, text_body=t) for s, t in zip(SUBJECTS, TEXTS)]
    cases += [compose.SendRequest(to=[R(f"P{i}.Person@Example.ORG", n)], cc=[R("cc@bücher.example", n)],
                                  bcc=[R("hidden@example.net", "Hidden Person")], reply_to=[R("r@example.com", n)],
                                  subject="names", text_body="body\n") for i, n in enumerate(NAMES)]
    cases += [compose.SendRequest(to=[R("h@example.org")], subject="html", text_body=None, html_body=h)
              for h in HTMLS if h]
    cases += [compose.SendRequest(to=[R("h@example.org")], subject="both", text_body="text\n", html_body=h) for h in HTMLS if h]
    cases.append(compose.SendRequest(to=[R("a@example.org")], subject="files", text_body="see attached\n",
                                     attachments=[_attachment(n, c, 10 + 300 * i) for i, (n, c) in enumerate(FILES)]))
    cases.append(compose.SendRequest(to=[R("a@example.org")], subject="invite", text_body="come\n",
                                     calendar=("REQUEST", "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n")))
    cases.append(compose.SendRequest(to=[R("a@example.org")], subject="auto", text_body="away\n",
                                     headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"}))
    cases.append(compose.SendRequest(to=[R("a@example.org")], subject="news", text_body="news\n",
                                     headers={"List-Unsubscribe": "<https://x.example/u>",
                                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))
    rng = random.Random(26)
    for _ in range(100):
        people = [R(f"{rng.choice(['a', 'B', 'c.d', 'e+f'])}{i}@{rng.choice(['example.org', 'Ex.COM', 'bücher.example'])}",
                    rng.choice(NAMES)) for i in range(rng.randrange(1, 5))]
        cases.append(compose.SendRequest(
            to=people[:2], cc=people[2:3], bcc=people[3:], subject=rng.choice(SUBJECTS),
            text_body=rng.choice(TEXTS + [None]) or None, html_body=rng.choice(HTMLS) or "<p>only html</p>",
            attachments=[_attachment(*rng.choice(FILES), rng.randrange(0, 3000)) for _ in range(rng.randrange(0, 3))]))
    return cases


def _compose_all(store, settings, inbox_id: str, original_id: str | None = None) -> list[tuple]:  # noqa: ANN001
    out = []
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        inbox.display_name = "Agent Ünïcode, \"the\" sender"
        original = db.get(Message, original_id) if original_id else None
        keys = outbound._signing_key(db, settings, db.get(Domain, inbox.domain_id))
        for request in _requests() if original is None else [compose.SendRequest(text_body="answer\n")]:
            composed = compose.compose(db, settings, inbox, request, original, NOW)
            signed = dkim.sign_with_keys(composed.raw, inbox.address.split("@")[1], keys, compose.SIGNED)
            out.append((request, composed, signed))
        db.rollback()
    return out


def _assert_same(composed: compose.Composed, signed: bytes) -> None:
    assert composed.parsed is not None
    oracle = dataclasses.asdict(parse_message(signed))
    assert dataclasses.asdict(composed.parsed) == oracle
    assert composed.parsed.snippet == parse_message(signed).snippet


def test_the_sent_copys_fields_are_those_of_its_signed_bytes(world, store, settings) -> None:  # noqa: ANN001
    agent = world.sender(world.owner("fields-owner@example.com"), "agent@fields.example.com")
    results = _compose_all(store, settings, agent.inbox_id)
    assert len(results) > 100
    for request, composed, signed in results:
        _assert_same(composed, signed)
        hidden = {r.email.lower() for r in request.bcc} - {r.email.lower() for r in request.to + request.cc}
        shown = {a["email"] for a in composed.parsed.to + composed.parsed.cc}
        assert not hidden & shown  # bcc never leaks into the stored copy
    kinds = [c.parsed for _, c, _ in results]
    assert any(p.attachments for p in kinds) and any(p.html for p in kinds) and any(p.automated for p in kinds)
    assert any(not p.subject.isascii() for p in kinds) and any(not p.from_name.isascii() for p in kinds)


def test_a_reply_s_threading_fields_are_those_of_its_signed_bytes(world, store, settings, client) -> None:  # noqa: ANN001
    agent = world.sender(world.owner("reply-owner@example.com"), "agent@reply.example.com")
    first = client.post("/v1/messages/", json={"to": [{"email": "Pal@Example.org", "name": "Pál"}],
                                               "subject": "Grüße", "text_body": "hi\n"}, headers=agent.auth)
    assert first.status_code == 201, first.get_json()
    [(_, composed, signed)] = _compose_all(store, settings, agent.inbox_id, first.get_json()["message_id"])
    _assert_same(composed, signed)
    assert composed.parsed.in_reply_to and composed.parsed.references == [composed.parsed.in_reply_to]
    assert composed.parsed.subject == "Re: Grüße"


@pytest.mark.parametrize(("subject", "fast"), [
    ("=?utf-8?q?looks_encoded?=", True),  # the email package decodes it when the field is set: both read "looks encoded"
    ("=?utf-8?q?=3D=3Futf-8=3Fq=3Fx=3F=3D?=", False),  # decodes to an encoded word: the bytes are parsed
    ("plain", True)])
def test_a_header_that_reads_as_an_encoded_word_is_parsed_from_the_bytes(world, store, settings, subject: str,
                                                                          fast: bool) -> None:  # noqa: ANN001
    agent = world.sender(world.owner("ew-owner@example.com"), "agent@ew.example.com")
    with store.session() as db:
        inbox = db.get(Inbox, agent.inbox_id)
        composed = compose.compose(db, settings, inbox, compose.SendRequest(to=[R("a@example.org")], subject=subject,
                                                                            text_body="x"), None, NOW)
        db.rollback()
    assert (composed.parsed is not None) == fast
    if fast:
        _assert_same(composed, composed.raw)


@pytest.mark.parametrize("request_body", [
    {"subject": "Grüße 🎉", "text_body": "x" * 5000, "cc": [{"email": "c@example.net", "name": "Çé"}],
     "bcc": [{"email": "secret@example.net"}]},
    {"subject": "=?utf-8?q?looks_encoded?=", "html_body": "<p>hi <script>x()</script></p>"},
    {"subject": "files", "text_body": "see\n", "attachments": [_attachment("naïve.pdf", "application/pdf", 4000)]},
])
def test_the_stored_sent_copy_reads_as_its_raw_bytes(client, world, store, request_body: dict) -> None:  # noqa: ANN001
    agent = world.sender(world.owner("stored-owner@example.com"), "agent@stored.example.com")
    sent = client.post("/v1/messages/", json={"to": [{"email": "to@example.org", "name": "Tó"}], **request_body},
                       headers=agent.auth)
    assert sent.status_code == 201, sent.get_json()
    with store.session() as db:
        message = db.get(Message, sent.get_json()["message_id"])
        raw = bytes(db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message.id)))
        expected = message_rows.message_row(parse_message(raw), message_id=message.id, tenant_id=message.tenant_id,
                                            inbox_id=message.inbox_id, thread_id=message.thread_id,
                                            direction="outbound", status=message.status, size=len(raw),
                                            now=message.created_at, is_read=True, envelope_from=message.envelope_from,
                                            sent_at=message.sent_at)
        for column, value in expected.items():
            assert getattr(message, column) == value, column
        assert raw.startswith(b"DKIM-Signature:") and b"secret@example.net" not in raw
