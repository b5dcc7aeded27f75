"""What the listener refuses, with which reply, and that nothing refused is stored."""
from __future__ import annotations

import smtplib
import time

import pytest
from sqlalchemy import update

from appliance.models import Domain, Inbox
from tests.integration.smtp_fixtures import (RawClient, client, message_bytes, smtp_listener,  # noqa: F401
                                             stored, tls_files)


def rcpt_reply(address: tuple[str, int], recipient: str) -> tuple[int, bytes]:
    with client(address) as smtp:
        assert smtp.mail("mallory@sender.example")[0] == 250
        return smtp.rcpt(recipient)


def test_an_unknown_user_of_a_hosted_domain_is_refused_at_rcpt(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener()
    assert rcpt_reply(address, "nobody@hosted.example") == (550, b"5.1.1 No such mailbox here")
    with client(address) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("a@sender.example", ["nobody@hosted.example"], message_bytes("x", "y"))
    assert refused.value.recipients["nobody@hosted.example"][0] == 550
    assert stored(store) == []


def test_an_inbox_on_an_unverified_domain_is_unknown(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@pending.example")
    with store.session() as db:
        domain_id = db.get(Inbox, inbox_id).domain_id
        db.execute(update(Domain).where(Domain.id == domain_id).values(status="pending"))
    assert rcpt_reply(smtp_listener(), "agent@pending.example") == (550, b"5.1.1 No such mailbox here")


@pytest.mark.parametrize("recipient", [
    "someone@elsewhere.example",                   # another domain
    "someone%elsewhere.example@hosted.example",    # the percent hack
    "elsewhere.example!someone@hosted.example",    # a bang path
    '"someone@elsewhere.example"@hosted.example',  # a quoted local part holding an @
    "@hosted.example:someone@elsewhere.example",   # a source route...
    "@elsewhere.example:agent@hosted.example",     # ...even to a hosted inbox
])
def test_relay_attempts_are_refused(world, store, smtp_listener, recipient: str) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener()
    with RawClient(address) as raw:
        raw.reply()
        assert raw.command(b"EHLO client.example\r\n")[0] == 250
        assert raw.command(b"MAIL FROM:<mallory@sender.example>\r\n")[0] == 250
        code, text = raw.command(f"RCPT TO:<{recipient}>\r\n".encode())
        assert (code, text[:9]) == (554, "554 5.7.1"), text
        assert "relay access denied" in text.lower()
        assert raw.command(b"DATA\r\n")[0] == 503  # no recipient was accepted
    assert stored(store) == []


def test_a_paused_inbox_is_told_to_retry_later(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    with store.session() as db:
        db.execute(update(Inbox).where(Inbox.id == inbox_id).values(status="paused"))
    assert rcpt_reply(smtp_listener(), "agent@hosted.example")[0] == 450
    assert stored(store) == []


@pytest.mark.parametrize("change", ["paused", "deleted", "domain unverified"])
def test_an_inbox_that_stops_receiving_between_rcpt_and_data_gets_nothing_and_nothing_is_lost(
        world, store, smtp_listener, change: str) -> None:
    owner = world.owner()
    changing = world.inbox(owner, "agent@hosted.example")
    world.inbox(owner, "other@elsewhere.example")
    sent = message_bytes("Mid-transaction", "agent@hosted.example, other@elsewhere.example")
    with client(smtp_listener()) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("agent@hosted.example")[0] == 250
        assert smtp.rcpt("other@elsewhere.example")[0] == 250
        with store.session() as db:  # an admin acts while the client is between RCPT and DATA
            if change == "domain unverified":
                db.execute(update(Domain).where(Domain.name == "hosted.example").values(status="pending"))
            else:
                db.execute(update(Inbox).where(Inbox.id == changing).values(status=change))
        code, reply = smtp.data(sent)
        assert (code, reply[:5]) == (451, b"4.2.1"), reply  # not stored for anyone: the client retries
        assert stored(store) == []
        # The retry: the changed inbox now gets its own answer, the other inbox its copy, once.
        refused = smtp.sendmail("a@sender.example", ["agent@hosted.example", "other@elsewhere.example"], sent)
    assert refused["agent@hosted.example"][0] == (450 if change == "paused" else 550)
    [(message, raw)] = stored(store)
    assert message.envelope_to == "other@elsewhere.example" and raw.endswith(sent)


def test_the_101st_recipient_is_deferred_and_the_first_hundred_get_the_message(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    second = world.inbox(owner, "other@hosted.example")
    with client(smtp_listener()) as smtp:
        smtp.mail("a@sender.example")
        for _ in range(99):
            assert smtp.rcpt("agent@hosted.example")[0] == 250
        assert smtp.rcpt("other@hosted.example")[0] == 250
        assert smtp.rcpt("other@hosted.example") == (452, b"4.5.3 Too many recipients")
        assert smtp.rcpt("agent@hosted.example") == (452, b"4.5.3 Too many recipients")
        assert smtp.data(message_bytes("Hundred", "agent@hosted.example"))[0] == 250
    rows = stored(store)
    assert len(rows) == 2 and second in {m.inbox_id for m, _ in rows}  # one copy per inbox


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on(world, store, smtp_listener,
                                                                         make_settings) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener(settings=make_settings(max_message_bytes=4096))
    big = message_bytes("Too big", "agent@hosted.example", body="x" * 70 + ("\r\n" + "y" * 70) * 60)
    assert len(big) > 4096
    with client(address) as smtp:
        assert smtp.esmtp_features["size"] == "4096"
        code, text = smtp.mail("a@sender.example", options=[f"SIZE={len(big)}"])
        assert (code, text[:5]) == (552, b"5.3.4"), text
        assert smtp.mail("a@sender.example")[0] == 250  # a client that does not declare the size
        assert smtp.rcpt("agent@hosted.example")[0] == 250
        code, text = smtp.data(big)
        assert (code, text[:5]) == (552, b"5.3.4"), text
        small = message_bytes("Small enough", "agent@hosted.example")
        assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], small) == {}
    assert [m.subject for m, _ in stored(store)] == ["Small enough"]


def test_every_reply_after_the_greeting_carries_an_enhanced_status_code(smtp_listener) -> None:
    with RawClient(smtp_listener()) as raw:
        code, greeting = raw.reply()
        assert code == 220 and greeting.startswith("220 mail.gentbox.test ESMTP")
        replies = [raw.command(line)[1] for line in (
            b"MAIL FROM:<a@sender.example>\r\n",  # before HELO
            b"HELO client.example\r\n", b"RCPT TO:<a@b.example>\r\n", b"DATA\r\n", b"BOGUS\r\n",
            b"VRFY agent@hosted.example\r\n", b"RSET\r\n", b"NOOP\r\n", b"MAIL FROM:<broken\r\n",
            b"QUIT\r\n")]
    assert replies[1] == "250 mail.gentbox.test"  # the answer to HELO/EHLO is exempt (RFC 2034)
    for reply in replies[:1] + replies[2:]:
        assert reply[3] == " " and reply[4:5] in ("2", "4", "5") and reply[5] == ".", reply


def test_connections_over_the_per_ip_limit_are_refused_with_421(smtp_listener, make_settings) -> None:
    address = smtp_listener(settings=make_settings(smtp_max_connections_per_ip=2))
    first, second = RawClient(address), RawClient(address)
    try:
        assert first.reply()[0] == 220 and second.reply()[0] == 220
        with RawClient(address) as third:
            code, text = third.reply()
            assert (code, text[:9]) == (421, "421 4.7.0"), text
            assert third.closed()
        assert first.command(b"QUIT\r\n")[0] == 221
        assert first.closed()
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the server has seen the close
            with RawClient(address) as fourth:
                code = fourth.reply()[0]
            if code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert code == 220
    finally:
        first.close()
        second.close()


def test_connections_over_the_per_ip_rate_are_refused_with_421(smtp_listener, make_settings) -> None:
    address = smtp_listener(settings=make_settings(smtp_connection_rate_per_ip=3))
    codes = []
    for _ in range(8):
        with RawClient(address) as raw:
            codes.append(raw.reply()[0])
    # Three per fixed minute window; should a window end during the loop, one of the two
    # windows still sees at least four of the eight connections.
    assert codes[0] == 220 and set(codes) == {220, 421} and codes.count(220) <= 6, codes


def test_an_idle_client_is_told_421_and_disconnected(smtp_listener, make_settings) -> None:
    address = smtp_listener(settings=make_settings(smtp_command_timeout=0.5))
    with RawClient(address) as raw:
        raw.reply()
        assert raw.command(b"EHLO client.example\r\n")[0] == 250
        started = time.monotonic()
        code, text = raw.reply()
        assert (code, text[:9]) == (421, "421 4.4.2"), text
        assert raw.closed() or raw.reply() == (0, "")
        assert 0.3 < time.monotonic() - started < 5


def test_a_client_stalling_in_data_is_disconnected_and_nothing_is_stored(world, store, smtp_listener,
                                                                         make_settings) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener(settings=make_settings(smtp_data_timeout=1.0, smtp_command_timeout=30))
    with RawClient(address) as raw:
        raw.reply()
        for line in (b"EHLO client.example\r\n", b"MAIL FROM:<a@sender.example>\r\n",
                     b"RCPT TO:<agent@hosted.example>\r\n", b"DATA\r\n"):
            raw.command(line)
        started = time.monotonic()
        for _ in range(6):  # keep sending lines, slowly: the data timeout bounds the whole DATA
            try:
                raw.send(b"Subject: slow\r\n")
            except OSError:  # closed by the server
                break
            time.sleep(0.25)
        code, text = raw.reply()
        assert (code, text[:9]) == (421, "421 4.4.2"), text
        assert 0.8 < time.monotonic() - started < 5
    assert stored(store) == []
