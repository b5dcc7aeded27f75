"""The SMTP listener accepts mail for hosted inboxes and stores it before answering 250."""
from __future__ import annotations

import re
import ssl

from sqlalchemy import select

from appliance.models import Attachment, Event
from appliance.services.workspace import blobs
from tests.integration.smtp_fixtures import (RawClient, client, message_bytes, smtp_listener,  # noqa: F401
                                             stored, tls_files)

RECEIVED = re.compile(
    rb"\AReceived: from client\.example \(unknown \[127\.0\.0\.1\]\)\r\n"
    rb"\tby mail\.gentbox\.test \(Gentbox\) with (?P<proto>[A-Z8]+) id (?P<id>[0-9A-F]{12})"
    rb"(?:\r\n\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\))?"
    rb"(?:\r\n\tfor <(?P<rcpt>[^>]+)>)?; (?P<date>[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4})\r\n")


def split_trace(raw: bytes) -> tuple[re.Match, bytes]:
    match = RECEIVED.match(raw)
    assert match is not None, raw[:400]
    return match, raw[match.end():]


def test_a_message_sent_with_smtplib_is_stored_byte_for_byte_under_a_received_header(
        world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@acme.example")
    address = smtp_listener()
    sent = message_bytes("Quarterly numbers", "agent@acme.example",
                         body="Line one.\r\n.A line that starts with a dot.\r\n..\r\nLast line.")
    with client(address) as smtp:
        smtp.mail("alice@sender.example")
        assert smtp.rcpt("Agent@ACME.example") == (250, b"2.1.5 Ok")
        code, reply = smtp.data(sent)
    assert code == 250, reply
    rows = stored(store)
    assert len(rows) == 1
    message, raw = rows[0]
    assert reply == f"2.0.0 Ok: queued as {message.id}".encode()
    assert message.inbox_id == inbox_id and message.tenant_id == owner.tenant_id
    assert (message.direction, message.status, message.subject) == ("inbound", "received", "Quarterly numbers")
    assert message.envelope_from == "alice@sender.example" and message.envelope_to == "Agent@ACME.example"
    assert message.client_ip == "127.0.0.1"
    assert message.text_body == "Line one.\r\n.A line that starts with a dot.\r\n..\r\nLast line.\r\n"
    trace, rest = split_trace(raw)
    assert rest == sent  # dot-stuffing undone, nothing else changed
    assert trace["proto"] == b"ESMTP" and trace["rcpt"] == b"Agent@ACME.example"
    assert message.size == len(raw)
    with store.read_sessions() as db:
        events = db.scalars(select(Event).where(Event.resource_id == message.id)).all()
    assert [e.type for e in events] == ["message.received"]


def test_one_message_to_two_inboxes_is_stored_once_in_each(world, store, smtp_listener) -> None:
    first_owner, second_owner = world.owner(), world.owner()
    first = world.inbox(first_owner, "sales@one.example")
    second = world.inbox(second_owner, "ops@two.example")
    address = smtp_listener()
    sent = message_bytes("For both", "sales@one.example, ops@two.example")
    with client(address) as smtp:
        refused = smtp.sendmail("bob@sender.example", ["sales@one.example", "ops@two.example",
                                                       "SALES@one.example"], sent)
    assert refused == {}
    rows = stored(store)
    assert sorted(m.inbox_id for m, _ in rows) == sorted([first, second])
    assert {m.tenant_id for m, _ in rows} == {first_owner.tenant_id, second_owner.tenant_id}
    for message, raw in rows:
        trace, rest = split_trace(raw)
        assert rest == sent
        assert trace["rcpt"] is None  # several recipients: the trace names none of them
    assert {m.envelope_to for m, _ in rows} == {"sales@one.example", "ops@two.example"}


def test_postmaster_of_a_hosted_domain_reaches_the_owner(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "team@hosted.example")
    address = smtp_listener()
    with client(address) as smtp:
        assert smtp.sendmail("", ["postmaster@hosted.example"], message_bytes("DMARC report", "x")) == {}
    [(message, _raw)] = stored(store)
    assert message.inbox_id == inbox_id and message.envelope_to == "postmaster@hosted.example"
    assert message.envelope_from == ""  # the null sender <>, as bounces and reports use


def test_ehlo_advertises_the_extensions_and_starttls_carries_the_mail(world, store, smtp_listener, settings) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@tls.example")
    address = smtp_listener()
    with client(address) as smtp:
        features = smtp.esmtp_features
        assert features["size"] == str(settings.max_message_bytes) == str(25 * 1024 * 1024)
        for name in ("8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
            assert name in features, features
        assert "auth" not in features  # no AUTH on the inbound listener
        assert smtp.noop() == (250, b"2.0.0 OK")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        assert smtp.starttls(context=context)[0] == 220
        smtp.ehlo()
        assert "starttls" not in smtp.esmtp_features and "auth" not in smtp.esmtp_features
        assert "enhancedstatuscodes" in smtp.esmtp_features
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        sent = message_bytes("Over TLS", "agent@tls.example")
        assert smtp.sendmail("alice@sender.example", ["agent@tls.example"], sent) == {}
    [(message, raw)] = stored(store)
    trace, rest = split_trace(raw)
    assert trace["proto"] == b"ESMTPS" and rest == sent


def test_without_a_certificate_starttls_is_not_offered(smtp_listener) -> None:
    with client(smtp_listener(tls=False)) as smtp:
        assert "starttls" not in smtp.esmtp_features
        assert smtp.docmd("STARTTLS")[0] == 454


def test_an_smtputf8_message_with_8bit_headers_is_stored_as_sent(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@utf8.example")
    address = smtp_listener()
    sent = ("From: Zoë <zoë@sender.example>\r\nTo: agent@utf8.example\r\nSubject: Grüße aus Köln\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße ✓\r\n").encode()
    with client(address) as smtp:
        assert smtp.sendmail("zoë@sender.example", ["agent@utf8.example"], sent,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    [(message, raw)] = stored(store)
    trace, rest = split_trace(raw)
    assert rest == sent and trace["proto"] == b"UTF8SMTP"
    assert message.subject == "Grüße aus Köln" and message.envelope_from == "zoë@sender.example"
    assert "Schöne Grüße ✓" in message.text_body


def test_a_message_with_nul_bytes_and_an_attachment_is_stored(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@nul.example")
    address = smtp_listener()
    sent = (b"From: a@sender.example\r\nTo: agent@nul.example\r\nSubject: odd\x00bytes\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\nbefore\x00after\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n")
    with client(address) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250 and smtp.rcpt("agent@nul.example")[0] == 250
        code, reply = smtp.data(sent)
    assert code == 250, reply
    [(message, raw)] = stored(store)
    assert split_trace(raw)[1] == sent
    with store.read_sessions() as db:
        [attachment] = db.scalars(select(Attachment).where(Attachment.message_id == message.id)).all()
        content = blobs.attachment_bytes(db, attachment)  # issue 19: the bytes live in the blob store
    assert (attachment.filename, content) == ("passwd", b"\x00\x01\x02\x03")


def test_pipelined_commands_get_their_replies_in_order(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@pipe.example")
    sent = message_bytes("Pipelined", "agent@pipe.example")
    with RawClient(smtp_listener()) as raw:
        assert raw.reply()[0] == 220
        raw.send(b"EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\n"
                 b"RCPT TO:<nobody@pipe.example>\r\nRCPT TO:<agent@pipe.example>\r\nDATA\r\n")
        assert raw.reply()[0] == 250
        assert raw.reply() == (250, "250 2.1.0 Ok")
        assert raw.reply() == (550, "550 5.1.1 No such mailbox here")
        assert raw.reply() == (250, "250 2.1.5 Ok")
        assert raw.reply()[0] == 354
        code, text = raw.command(sent + b".\r\nQUIT\r\n")
        assert code == 250 and "queued as msg_" in text
        assert raw.reply() == (221, "221 2.0.0 Bye")
    assert [m.subject for m, _ in stored(store)] == ["Pipelined"]
