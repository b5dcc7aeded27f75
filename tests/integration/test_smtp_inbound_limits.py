"""Inbound resource limits of the SMTP listener (issue 14, point 8): one deadline for a message's
whole authentication step, authentication in a thread pool of its own (slow DNS never holds up
another client's RCPT or mail), and caps on connections at once, per client and in all.

A UDP socket that never answers stands in for a DNS server that times out; dnsmasq answers the
rest; clients are real sockets (smtplib, or raw SMTP), some from other loopback addresses
(127.0.0.2, ...) to be other clients.
"""
from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import dkim
import pytest

from appliance.db import Store
from smtp.auth import make_authenticator
from smtp.server import Listener
from tests.dnsserver import DnsServer
from tests.helpers import new_dkim_key
from tests.integration.smtp_fixtures import (RawClient, message_bytes, smtp_listener,  # noqa: F401
                                             stored, tls_files)

INBOX = "agent@hosted.example"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return new_dkim_key()


@pytest.fixture
def silent_dns():
    """host:port of a DNS server that takes every query and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{silent.getsockname()[1]}"


@pytest.fixture
def listener_for(tls_files):  # noqa: F811
    """Start a Listener on 127.0.0.1:0 with the given store and settings (authentication on);
    the test sees the Listener itself (to watch its sessions). Stopped after the test."""
    started: list[Listener] = []

    def start(store: Store, settings) -> Listener:
        listener = Listener(store, settings, host="127.0.0.1", port=0, authenticate=make_authenticator(settings))
        listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


class ClientFrom(RawClient):
    """RawClient connected from a loopback address of its own: another client to the listener."""

    def __init__(self, address: tuple[str, int], source: str, timeout: float = 15) -> None:
        self.sock = socket.create_connection(address, timeout=timeout, source_address=(source, 0))
        self.buffer = b""


def signed_ten_times(raw: bytes, domain: str, key: tuple[bytes, str]) -> bytes:
    """raw under ten DKIM signatures of domain, each naming a selector of its own."""
    for number in range(10):
        raw = dkim.sign(raw, f"s{number}".encode(), domain.encode(), key[0], include_headers=[b"from"]) + raw
    return raw


def until(condition, seconds: float = 10.0) -> None:
    """Poll condition() until it is true; fail after seconds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_twenty_clients_stuck_in_dns_do_not_stop_another_clients_mail(world, store, make_settings, silent_dns,
                                                                     key, listener_for) -> None:
    owner = world.owner()
    world.inbox(owner, INBOX)
    # Every DNS query the listener makes goes to the silent server: each would wait 2 s.
    settings = make_settings(dns_servers=silent_dns, dns_timeout=2.0, mail_auth_deadline=1.0,
                             smtp_max_connections_per_ip=25)
    listener = listener_for(store, settings)
    address = listener.address
    # Ten signatures, ten selectors, a domain each: 200 names that time out.
    contents = [signed_ten_times(message_bytes(f"stuck {n}", INBOX, sender=f"bad@d{n}.test"), f"d{n}.test", key)
                for n in range(20)]
    stuck = [RawClient(address, timeout=30) for _ in range(20)]
    try:
        for number, raw in enumerate(stuck):  # all in DATA first, so none waits for another's RCPT
            assert raw.reply()[0] == 220
            assert raw.command(b"EHLO client.example\r\n")[0] == 250
            assert raw.command(f"MAIL FROM:<bad@d{number}.test>\r\n".encode())[0] == 250
            assert raw.command(f"RCPT TO:<{INBOX}>\r\n".encode())[0] == 250
            assert raw.command(b"DATA\r\n")[0] == 354
        for raw, content in zip(stuck, contents):
            raw.send(content + b".\r\n")
        # Each is being authenticated (or, on a slow machine, already past its deadline and stored).
        until(lambda: listener.handler.storing + len(stored(store)) >= 20, 60)

        started = time.monotonic()
        with smtplib.SMTP(*address, local_hostname="other.example", timeout=10,
                          source_address=("127.0.0.2", 0)) as other:
            other.sendmail("good@good.test", [INBOX], message_bytes("not held up", INBOX, sender="good@good.test"))
        assert time.monotonic() - started < 5

        # The twenty are stored too, their unfinished checks temperror, and answered 250.
        assert [raw.reply()[0] for raw in stuck] == [250] * 20
    finally:
        for raw in stuck:
            raw.close()
    rows = stored(store)
    assert len(rows) == 21
    for message, _raw in rows:
        assert message.authentication["dkim"] in ("temperror", "none"), message.authentication


def test_rcpt_is_answered_while_every_authentication_thread_waits_on_dns(world, store, make_settings, silent_dns,
                                                                          listener_for) -> None:
    owner = world.owner()
    world.inbox(owner, INBOX)
    # Two threads of each kind; four messages wait 3 s a DNS question, up to a 4 s deadline.
    settings = make_settings(dns_servers=silent_dns, dns_timeout=3.0, mail_auth_deadline=4.0,
                             smtp_auth_threads=2, smtp_store_threads=2)
    listener = listener_for(store, settings)
    stuck = [RawClient(listener.address, timeout=30) for _ in range(4)]
    try:
        for number, raw in enumerate(stuck):
            assert raw.reply()[0] == 220
            assert raw.command(b"EHLO client.example\r\n")[0] == 250
            assert raw.command(f"MAIL FROM:<bad@d{number}.test>\r\n".encode())[0] == 250
            assert raw.command(f"RCPT TO:<{INBOX}>\r\n".encode())[0] == 250
            assert raw.command(b"DATA\r\n")[0] == 354
            raw.send(message_bytes(f"stuck {number}", INBOX, sender=f"bad@d{number}.test") + b".\r\n")
        until(lambda: listener.handler.storing == 4)
        started = time.monotonic()
        with ClientFrom(listener.address, "127.0.0.2") as other:
            assert other.reply()[0] == 220  # admitted (its rate counter is a store call too)
            assert other.command(b"EHLO other.example\r\n")[0] == 250
            assert other.command(b"MAIL FROM:<good@good.test>\r\n")[0] == 250
            assert other.command(f"RCPT TO:<{INBOX}>\r\n".encode())[0] == 250
            assert time.monotonic() - started < 2  # not after the DNS waits of the others (3 s and more)
            assert listener.handler.storing == 4  # which were still waiting
        assert [raw.reply()[0] for raw in stuck] == [250] * 4
    finally:
        for raw in stuck:
            raw.close()


class SlowZoneDnsServer(DnsServer):
    """dnsmasq answering its zones itself, and passing questions about slow.invalid to a server
    that never answers."""

    def __init__(self, workdir: Path, silent: str) -> None:
        super().__init__(workdir, zones=("test", "example"))
        self.silent = silent

    def _config(self) -> str:
        host, port = self.silent.split(":")
        return super()._config() + f"server=/slow.invalid/{host}#{port}\n"


def test_past_the_deadline_unfinished_results_are_temperror_and_the_mail_is_stored(
        world, store, make_settings, silent_dns, key, listener_for, tmp_path) -> None:
    owner = world.owner()
    world.inbox(owner, INBOX)
    dns_server = SlowZoneDnsServer(tmp_path / "dns", silent_dns)
    dns_server.workdir.mkdir()
    dns_server.publish("sender.test", "TXT", "v=spf1 ip4:127.0.0.1 -all", restart=False)
    dns_server.publish("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject", restart=False)
    dns_server.start()
    try:
        # A DNS query may take 5 s; the whole authentication step 1 s.
        settings = make_settings(dns_servers=dns_server.address, dns_timeout=5.0, mail_auth_deadline=1.0)
        address = listener_for(store, settings).address
        raw = message_bytes("deadline", INBOX, sender="alice@sender.test")
        signed = dkim.sign(raw, b"sel", b"slow.invalid", key[0], include_headers=[b"from"]) + raw
        started = time.monotonic()
        with smtplib.SMTP(*address, local_hostname="client.example", timeout=30) as smtp:
            smtp.sendmail("alice@sender.test", [INBOX], signed)
        elapsed = time.monotonic() - started
    finally:
        dns_server.stop()
    assert elapsed < 3, elapsed
    [(message, stored_raw)] = stored(store)
    auth = message.authentication
    assert auth["spf"] == "pass"  # answered before the deadline: kept
    assert (auth["dkim"], auth["dmarc"]) == ("temperror", "temperror")  # not answered by it
    assert auth["dkim_signatures"] == [{"domain": "slow.invalid", "selector": "sel", "result": "temperror"}]
    header = stored_raw.split(b"\r\nReceived: ", 1)[0]
    assert header.startswith(b"Authentication-Results: mail.gentbox.test;")
    for method in (b"spf=pass", b"dkim=temperror header.d=slow.invalid", b"dmarc=temperror"):
        assert method in header


def admitted(address: tuple[str, int], source: str) -> ClientFrom | None:
    """A connection from source that was greeted 220; None when it was refused with 421 4.7.0."""
    conn = ClientFrom(address, source)
    code, text = conn.reply()
    if code == 220:
        return conn
    assert (code, text[:9]) == (421, "421 4.7.0"), text
    assert conn.closed()
    conn.close()
    return None


def admitted_soon(address: tuple[str, int], source: str) -> ClientFrom:
    """admitted(), retried until the listener has seen a freed slot's close."""
    deadline = time.monotonic() + 5
    while (conn := admitted(address, source)) is None:
        assert time.monotonic() < deadline, "no slot freed"
        time.sleep(0.05)
    return conn


def test_the_per_address_cap_refuses_one_client_and_not_another(smtp_listener, make_settings) -> None:  # noqa: F811
    address = smtp_listener(settings=make_settings(smtp_max_connections_per_ip=2))
    open_ = [admitted(address, "127.0.0.1"), admitted(address, "127.0.0.1")]
    try:
        assert None not in open_
        assert admitted(address, "127.0.0.1") is None  # a third from the same address
        open_.append(admitted(address, "127.0.0.2"))  # another address has slots of its own
        assert open_[-1] is not None
        assert open_[0].command(b"QUIT\r\n")[0] == 221
        open_[0].close()
        open_.append(admitted_soon(address, "127.0.0.1"))
    finally:
        for conn in filter(None, open_):
            conn.close()


def test_the_global_cap_refuses_any_client_past_it_and_admits_again_after_a_close(
        smtp_listener, make_settings) -> None:  # noqa: F811
    address = smtp_listener(settings=make_settings(smtp_max_connections=3, smtp_max_connections_per_ip=10))
    open_ = [admitted(address, f"127.0.0.{n}") for n in (1, 2, 3)]
    try:
        assert None not in open_
        refused = ClientFrom(address, "127.0.0.4")
        assert refused.reply() == (421, "421 4.7.0 Too many connections; try again later")
        refused.close()
        assert admitted(address, "127.0.0.1") is None
        assert open_[1].command(b"QUIT\r\n")[0] == 221
        open_[1].close()
        open_.append(admitted_soon(address, "127.0.0.4"))
    finally:
        for conn in filter(None, open_):
            conn.close()
