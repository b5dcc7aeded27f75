"""The remote peers the delivery worker is tested against do what they claim, proven with plain
smtplib and dnspython: the test DNS serves MX preference, null MX, A fallback, NXDOMAIN and
SERVFAIL/timeout then recovery; each receiver behaviour; STARTTLS, AUTH and implicit TLS;
Postfix's smtp-sink captures; Mail::DKIM passes what dkimpy signed and fails it once altered.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
import time

import dkim
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.resolver
import pytest

from tests.helpers import new_dkim_key
from tests.integration.remote_mail import Behaviour, RemoteReceiver, independent_dkim_check
from tests.integration.remote_mail import remote_world  # noqa: F401

MESSAGE = (b"From: Alice <alice@sender.example>\r\n"
           b"To: Bob <bob@partner.example>\r\n"
           b"Subject: Remote peers\r\n"
           b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
           b"Message-ID: <peers.1@sender.example>\r\n"
           b"\r\n"
           b"Hello.\r\n"
           b".A line that starts with a dot.\r\n")


@pytest.fixture
def make_receiver():
    """A RemoteReceiver on 127.0.0.1, port 0 (no DNS needed); stopped after the test."""
    started: list[RemoteReceiver] = []

    def start(**options) -> RemoteReceiver:
        receiver = RemoteReceiver("127.0.0.1", 0, **options).start()
        started.append(receiver)
        return receiver
    yield start
    for receiver in started:
        receiver.stop()


def resolver_for(world) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = world.dns_port
    resolver.timeout = resolver.lifetime = 2.0
    resolver.cache = None
    return resolver


def mx_of(world, name: str) -> list[tuple[int, str]]:
    answer = resolver_for(world).resolve(name, "MX", search=False)
    return sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer)


def a_of(world, name: str) -> list[str]:
    return sorted(r.to_text() for r in resolver_for(world).resolve(name, "A", search=False))


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def send(address: tuple[str, int], rcpts: list[str], data: bytes = MESSAGE, *, timeout: float = 5.0) -> dict:
    with smtplib.SMTP(*address, local_hostname="client.sender.example", timeout=timeout) as smtp:
        return smtp.sendmail("alice@sender.example", rcpts, data)


# --- DNS ------------------------------------------------------------------------------------------
def test_mx_records_are_served_with_their_preferences_and_addresses(remote_world):
    first, second = remote_world.receivers
    assert first.port == second.port == remote_world.port and first.host != second.host
    remote_world.dns.publish("partner.example", "TXT", "v=spf1 -all")  # the test's own record
    hosts = remote_world.domain("partner.example", mx=[(20, second), (10, first)])

    assert mx_of(remote_world, "partner.example") == [(10, hosts[1]), (20, hosts[0])]
    assert a_of(remote_world, hosts[1]) == [first.host]
    assert a_of(remote_world, hosts[0]) == [second.host]
    with pytest.raises(dns.resolver.NoAnswer):  # MX only: no A record at the domain itself
        resolver_for(remote_world).resolve("partner.example", "A", search=False)

    # The MX host answers on the world's port, and the records can change at run time.
    send((a_of(remote_world, hosts[1])[0], remote_world.port), ["bob@partner.example"])
    assert first.wait_for(1)[0].rcpt_tos == ("bob@partner.example",)
    remote_world.domain("partner.example", mx=[(5, second)])
    assert mx_of(remote_world, "partner.example") == [(5, "mx1.partner.example")]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver_for(remote_world).resolve("mx2.partner.example", "A", search=False)
    txt = resolver_for(remote_world).resolve("partner.example", "TXT", search=False)
    assert [r.to_text() for r in txt] == ['"v=spf1 -all"']


def test_null_mx_is_served_as_mx_0_root(remote_world):
    remote_world.null_mx("nomail.example", a=remote_world.receivers[0])
    answer = resolver_for(remote_world).resolve("nomail.example", "MX", search=False)
    assert [(r.preference, r.exchange) for r in answer] == [(0, dns.name.root)]
    assert answer.rrset.to_text() == "nomail.example. 0 IN MX 0 ."
    assert a_of(remote_world, "nomail.example") == [remote_world.receivers[0].host]


def test_a_only_domain_has_no_mx_and_its_a_record_reaches_the_receiver(remote_world):
    receiver = remote_world.receivers[1]
    remote_world.a_only("bare.example", receiver)
    with pytest.raises(dns.resolver.NoAnswer):
        resolver_for(remote_world).resolve("bare.example", "MX", search=False)
    assert a_of(remote_world, "bare.example") == [receiver.host]
    send((receiver.host, remote_world.port), ["someone@bare.example"])
    assert receiver.wait_for(1)[0].rcpt_tos == ("someone@bare.example",)


def test_unpublished_and_removed_names_are_nxdomain(remote_world):
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver_for(remote_world).resolve("nowhere.example", "MX", search=False)
    remote_world.domain("gone.example", mx=[(10, remote_world.receivers[0])])
    remote_world.remove("gone.example")
    for name in ("gone.example", "mx1.gone.example"):
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver_for(remote_world).resolve(name, "MX", search=False)


def test_servfail_and_timeout_then_recovery(remote_world):
    remote_world.domain("flaky.example", mx=[(10, remote_world.receivers[0])])
    query = dns.message.make_query("flaky.example", "MX")

    remote_world.break_dns("flaky.example", "servfail")
    reply = dns.query.udp(query, "127.0.0.1", port=remote_world.dns_port, timeout=2)
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    with pytest.raises(dns.resolver.NoNameservers):
        resolver_for(remote_world).resolve("mx1.flaky.example", "A", search=False)
    # Other names keep working while flaky.example is broken.
    remote_world.domain("steady.example", mx=[(10, remote_world.receivers[1])])
    assert mx_of(remote_world, "steady.example") == [(10, "mx1.steady.example")]

    remote_world.break_dns("flaky.example", "timeout")
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, "127.0.0.1", port=remote_world.dns_port, timeout=0.3)
    assert time.monotonic() - started < 2

    remote_world.fix_dns("flaky.example")
    assert mx_of(remote_world, "flaky.example") == [(10, "mx1.flaky.example")]
    assert a_of(remote_world, "mx1.flaky.example") == [remote_world.receivers[0].host]


def test_dead_host_refuses_the_shared_port_and_more_peers_share_it(remote_world):
    dead = remote_world.dead_host()
    third = remote_world.add_receiver()
    assert third.port == remote_world.port and dead not in {r.host for r in remote_world.receivers}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dead, remote_world.port), timeout=2).close()
    send(third.address, ["carol@partner.example"])
    assert third.wait_for(1)

    third.stop()  # a host that goes away and comes back on the same address and port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(third.address, timeout=2).close()
    third.start()
    send(third.address, ["carol@partner.example"])
    assert len(third.wait_for(2)) == 2 and third.connections == 2


# --- receiver behaviours ---------------------------------------------------------------------------
def test_accept_records_the_transaction_exactly(make_receiver):
    receiver = make_receiver()
    refused = send(receiver.address, ["bob@partner.example", "Carol@Partner.example"])
    assert refused == {}
    [delivery] = receiver.wait_for(1)
    assert delivery.mail_from == "alice@sender.example"
    assert delivery.rcpt_tos == ("bob@partner.example", "Carol@Partner.example")
    assert delivery.data == MESSAGE  # dot-unstuffed, CRLF, byte for byte
    assert delivery.ehlo == "client.sender.example"
    assert (delivery.tls, delivery.auth_user) == (False, None)
    assert delivery.message()["Subject"] == "Remote peers"
    assert receiver.connections == 1
    assert receiver.commands == {"EHLO": 1, "MAIL": 1, "RCPT": 2, "DATA": 1, "QUIT": 1}


@pytest.mark.parametrize(("behaviour", "code"), [(Behaviour.TEMPFAIL_RCPT, 451), (Behaviour.PERMFAIL_RCPT, 550)])
def test_failure_at_rcpt(make_receiver, behaviour, code):
    receiver = make_receiver()
    receiver.set_behaviour(behaviour)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(receiver.address, ["bob@partner.example"])
    assert refused.value.recipients["bob@partner.example"][0] == code
    assert receiver.deliveries == [] and receiver.commands["DATA"] == 0
    assert [(r.stage, r.behaviour) for r in receiver.refusals] == [("RCPT", behaviour)]


@pytest.mark.parametrize(("behaviour", "code"), [(Behaviour.TEMPFAIL_DATA, 451), (Behaviour.PERMFAIL_DATA, 550)])
def test_failure_at_data(make_receiver, behaviour, code):
    receiver = make_receiver()
    receiver.set_behaviour(behaviour, reply=f"{code} {code // 100}.7.1 Custom words")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(receiver.address, ["bob@partner.example"])
    assert (refused.value.smtp_code, refused.value.smtp_error) == (code, f"{code // 100}.7.1 Custom words".encode())
    assert receiver.deliveries == [] and receiver.commands["DATA"] == 1
    assert receiver.refusals[0].rcpt_tos == ("bob@partner.example",)


def test_per_recipient_behaviour_and_times(make_receiver):
    receiver = make_receiver()
    receiver.set_behaviour("permfail_rcpt", recipient="Nobody@Partner.example")
    receiver.set_behaviour(Behaviour.TEMPFAIL_RCPT, recipient="busy@partner.example", times=1)
    refused = send(receiver.address, ["bob@partner.example", "nobody@partner.example", "busy@partner.example"])
    assert {rcpt: code for rcpt, (code, _) in refused.items()} == {"nobody@partner.example": 550,
                                                                  "busy@partner.example": 451}
    assert receiver.wait_for(1)[0].rcpt_tos == ("bob@partner.example",)
    # busy's 451 was for one RCPT only; a DATA rule for one recipient fails the transaction.
    receiver.set_behaviour(Behaviour.TEMPFAIL_DATA, recipient="late@partner.example", times=1)
    with pytest.raises(smtplib.SMTPDataError):
        send(receiver.address, ["busy@partner.example", "late@partner.example"])
    send(receiver.address, ["busy@partner.example", "late@partner.example"])
    assert receiver.wait_for(2)[1].rcpt_tos == ("busy@partner.example", "late@partner.example")
    receiver.reset_behaviour()
    assert send(receiver.address, ["nobody@partner.example"]) == {}


def test_drop_at_connect_and_after_data(make_receiver):
    receiver = make_receiver()
    receiver.set_behaviour(Behaviour.DROP_CONNECT, times=1)
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
        send(receiver.address, ["bob@partner.example"])
    assert receiver.commands == {}

    receiver.set_behaviour(Behaviour.DROP_DATA)
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
        send(receiver.address, ["bob@partner.example"])
    assert receiver.deliveries == [] and receiver.commands["DATA"] == 1
    assert [r.behaviour for r in receiver.refusals] == [Behaviour.DROP_CONNECT, Behaviour.DROP_DATA]
    assert receiver.connections == 2


def test_stall_times_the_client_out_and_stop_still_works(make_receiver):
    receiver = make_receiver()
    receiver.set_behaviour(Behaviour.STALL)
    started = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        send(receiver.address, ["bob@partner.example"], timeout=0.5)
    assert time.monotonic() - started < 3

    held = socket.create_connection(receiver.address, timeout=5)  # a stalled client still connected
    receiver.wait_for_connections(2)
    assert receiver.open_connections >= 1
    started = time.monotonic()
    receiver.stop()
    assert time.monotonic() - started < 2
    try:
        assert held.recv(100) == b""  # closed without a word
    except ConnectionResetError:
        pass
    finally:
        held.close()


def test_stall_after_data(make_receiver):
    receiver = make_receiver()
    receiver.set_behaviour(Behaviour.STALL_DATA)
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        send(receiver.address, ["bob@partner.example"], timeout=0.5)
    assert receiver.deliveries == [] and receiver.commands["DATA"] == 1


# --- TLS and AUTH ---------------------------------------------------------------------------------
def test_starttls(make_receiver):
    receiver = make_receiver(starttls=True)
    with smtplib.SMTP(*receiver.address, local_hostname="client.sender.example", timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        smtp.starttls(context=unverified())
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.sendmail("alice@sender.example", ["bob@partner.example"], MESSAGE)
    [delivery] = receiver.wait_for(1)
    assert delivery.tls and delivery.tls_version.startswith("TLS") and delivery.data == MESSAGE
    assert receiver.commands["STARTTLS"] == 1 and receiver.connections == 1


def test_auth_after_starttls_with_plain_and_login(make_receiver):
    receiver = make_receiver(starttls=True, credentials={"relay-user": "s3cret"})
    with smtplib.SMTP(*receiver.address, timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # only after STARTTLS
        smtp.starttls(context=unverified())
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert smtp.mail("alice@sender.example")[0] == 530
        smtp.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("relay-user", "wrong")
        smtp.user, smtp.password = "relay-user", "s3cret"
        assert smtp.auth("PLAIN", smtp.auth_plain)[0] == 235
        smtp.sendmail("alice@sender.example", ["bob@partner.example"], MESSAGE)
    with smtplib.SMTP(*receiver.address, timeout=5) as smtp:
        smtp.starttls(context=unverified())
        smtp.ehlo()
        smtp.user, smtp.password = "relay-user", "s3cret"
        assert smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)[0] == 235
        smtp.sendmail("alice@sender.example", ["carol@partner.example"], MESSAGE)
    deliveries = receiver.wait_for(2)
    assert [(d.auth_user, d.tls) for d in deliveries] == [("relay-user", True)] * 2


def test_implicit_tls_with_auth(make_receiver):
    receiver = make_receiver(implicit_tls=True, credentials={"relay-user": "s3cret"})
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError, TimeoutError)):
        send(receiver.address, ["bob@partner.example"], timeout=0.3)  # plain SMTP gets nowhere
    with smtplib.SMTP_SSL(*receiver.address, context=unverified(), timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.login("relay-user", "s3cret")
        smtp.sendmail("alice@sender.example", ["bob@partner.example"], MESSAGE)
    [delivery] = receiver.wait_for(1)
    assert (delivery.tls, delivery.auth_user, delivery.data) == (True, "relay-user", MESSAGE)


# --- Postfix smtp-sink ----------------------------------------------------------------------------
def test_smtp_sink_captures_on_the_shared_port(remote_world):
    sink = remote_world.add_sink()
    assert sink.port == remote_world.port and sink.host not in {r.host for r in remote_world.receivers}
    remote_world.domain("sunk.example", mx=[(10, sink)])
    host = a_of(remote_world, "mx1.sunk.example")[0]
    for n in range(3):
        send((host, remote_world.port), ["bob@sunk.example", "carol@sunk.example"],
             MESSAGE.replace(b"Remote peers", b"Sunk %d" % n))
    messages = sink.wait_for(3)
    assert len(messages) == 3 and sink.count() == 3
    assert {m.message()["Subject"] for m in messages} == {"Sunk 0", "Sunk 1", "Sunk 2"}
    assert messages[0].mail_from == "alice@sender.example"
    assert messages[0].rcpt_tos == ("bob@sunk.example", "carol@sunk.example")
    assert messages[0].helo == "client.sender.example"
    assert messages[0].data.replace(b"\n", b"\r\n").startswith(MESSAGE.split(b"Subject")[0])
    assert messages[0].data.endswith(b"\n.A line that starts with a dot.\n")


# --- the independent DKIM verifier ----------------------------------------------------------------
def test_mail_dkim_passes_dkimpy_signature_and_fails_an_altered_body(remote_world):
    pem, txt = new_dkim_key()
    remote_world.dns.publish("s2024._domainkey.sender.example", "TXT", txt)
    signed = dkim.sign(MESSAGE, b"s2024", b"sender.example", pem, canonicalize=(b"relaxed", b"relaxed"),
                       include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + MESSAGE
    receiver = remote_world.receivers[0]
    send(receiver.address, ["bob@partner.example"], signed)
    received = receiver.wait_for(1)[0].data
    assert received == signed

    verdict = independent_dkim_check(received, remote_world.dns_port)
    assert verdict["result"] == "pass", verdict
    [signature] = verdict["signatures"]
    assert (signature["d"], signature["s"], signature["a"], signature["c"]) == \
        ("sender.example", "s2024", "rsa-sha256", "relaxed/relaxed")
    assert signature["h"].lower().split(":") == ["from", "to", "subject", "date", "message-id"]

    altered = independent_dkim_check(received.replace(b"Hello.", b"Hello!"), remote_world.dns_port)
    assert altered["result"] == "fail" and "body has been altered" in altered["detail"], altered
    assert independent_dkim_check(MESSAGE, remote_world.dns_port)["result"] == "none"
    remote_world.dns.remove("s2024._domainkey.sender.example")
    no_key = independent_dkim_check(received, remote_world.dns_port)  # the key is gone from DNS
    assert (no_key["result"], no_key["detail"]) == ("invalid", "invalid (public key: not available)")
