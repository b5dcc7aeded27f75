"""Hostile input to the IMAP server (issue 25): a 100 MB literal, an unterminated literal, 10,000
nested parentheses, invalid modified UTF-7 mailbox names, over-long lines and commands before TLS
get clean BAD/NO answers (or a BYE), memory stays bounded, and the server stays up."""
from __future__ import annotations

import imaplib
import resource
import socket
import ssl
import time

import pytest

from tests.integration.imap_fixtures import client_context, imap_server, mailbox, tls_files  # noqa: F401

MB = 1024 * 1024
_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while _OPEN:
        _OPEN.pop().close()


class Raw:
    """IMAP over a bare socket: exact bytes out, whole lines back."""

    def __init__(self, host: str, port: int, *, tls: bool = False) -> None:
        sock = socket.create_connection((host, port), timeout=15)
        self.sock = client_context().wrap_socket(sock) if tls else sock
        _OPEN.append(self.sock)
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def tagged(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """(untagged lines, the tagged line) of the command tagged tag ("" once the server closed)."""
        seen = []
        while True:
            line = self.line()
            if not line or line.startswith(tag + b" "):
                return seen, line
            seen.append(line)

    def starttls(self) -> None:
        self.send(b"t STARTTLS\r\n")
        assert self.tagged(b"t")[1].startswith(b"t OK")
        self.sock = client_context().wrap_socket(self.sock)
        _OPEN.append(self.sock)

    def login(self, box) -> None:
        self.send(f'l LOGIN "{box.address}" "{box.password}"\r\n'.encode())
        assert self.tagged(b"l")[1].startswith(b"l OK")

    def closed(self, within: float = 5.0) -> bool:
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionError, ssl.SSLError):
            return True


def still_serves(address, box) -> None:
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    imap.login(box.address, box.password)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_100_mb_literal_is_refused_before_it_is_read_and_memory_stays_bounded(imap_server, mailbox) -> None:
    address = imap_server()
    before = peak_rss()
    raw = Raw(address.host, address.port)
    raw.starttls()
    raw.login(mailbox)
    raw.send(b"a APPEND Drafts {104857600}\r\n")  # synchronising: the client waits for "+"
    assert raw.tagged(b"a")[1].startswith(b"a NO [TOOBIG]")
    raw.send(b"b NOOP\r\n")
    assert raw.tagged(b"b")[1] == b"b OK NOOP completed"
    raw.send(b"c APPEND Drafts {104857600+}\r\n")  # LITERAL+: the bytes are coming, so the server hangs up
    untagged, tagged = raw.tagged(b"c")
    assert tagged.startswith(b"c BAD [TOOBIG]")
    try:
        chunk = b"x" * MB
        for _ in range(100):
            raw.send(chunk)
    except (ConnectionError, ssl.SSLError, OSError):
        pass  # the server closed: what we still had to send has nowhere to go
    assert raw.closed()
    assert peak_rss() - before < 40 * MB
    still_serves(address, mailbox)


def test_an_unterminated_literal_ends_with_the_connection_and_harms_nobody(imap_server, mailbox) -> None:
    address = imap_server(imap_timeout=1.0)
    raw = Raw(address.host, address.tls_port, tls=True)
    raw.login(mailbox)
    raw.send(b"a APPEND Drafts {20}\r\n")
    assert raw.line().startswith(b"+")
    raw.send(b"only five")  # and then nothing more
    assert raw.closed(within=10)
    other = Raw(address.host, address.tls_port, tls=True)
    other.send(b"b APPEND Drafts {20}\r\n")
    assert other.line().startswith(b"+")
    other.sock.close()  # gone in the middle of the literal
    still_serves(address, mailbox)


def test_deep_nesting_bad_syntax_and_long_lines_get_bad_and_the_session_goes_on(imap_server, mailbox) -> None:
    address = imap_server()
    raw = Raw(address.host, address.tls_port, tls=True)
    raw.login(mailbox)
    raw.send(b"s SELECT INBOX\r\n")
    assert raw.tagged(b"s")[1].startswith(b"s OK")
    raw.send(b"a SEARCH " + b"(" * 10_000 + b"ALL" + b")" * 10_000 + b"\r\n")
    assert raw.tagged(b"a")[1] == b"a BAD Too deeply nested"
    raw.send(b"b FETCH 1:* " + b"(" * 10_000 + b"\r\n")
    assert raw.tagged(b"b")[1].startswith(b"b BAD")
    for command in (b'c SELECT "unterminated\r\n', b"d FETCH x:y FLAGS\r\n", b"e UID FROB 1\r\n",
                    b"f FETCH 1 (BODY[HEADER.FIELDS (A)]<1.2.3>)\r\n", b"g SEARCH OR ALL\r\n",
                    b"h STORE 1 +FLAGS (\\Bogus)\r\n", b"i SEARCH 99999999999999 ALL\r\n"):
        raw.send(command)
        tag = command.split(b" ", 1)[0]
        assert raw.tagged(tag)[1].startswith(tag + b" BAD"), command
    raw.send(b"j NOOP\r\n")
    assert raw.tagged(b"j")[1] == b"j OK NOOP completed"
    raw.send(b"k NOOP " + b"x" * 100_000 + b"\r\n")  # longer than any line may be: BYE
    assert raw.tagged(b"k")[1] == b""
    still_serves(address, mailbox)


def test_invalid_modified_utf7_mailbox_names_are_refused(imap_server, mailbox) -> None:
    address = imap_server()
    raw = Raw(address.host, address.tls_port, tls=True)
    raw.login(mailbox)
    for n, name in enumerate((b'"&Jjo!"', b'"&AGE-"', b'"a&b"', b'"&ZeVnLIqe"', b"{4}\r\nr\xc3\xa9s")):
        raw.send(b"c%d CREATE " % n + name + b"\r\n")
        if name.startswith(b"{"):
            assert raw.line().startswith(b"+")
        assert raw.tagged(b"c%d" % n)[1].startswith(b"c%d BAD Invalid mailbox name" % n), name
    raw.send(b'd CREATE "Entw&APw-rfe"\r\n')  # valid: Entwürfe, a label of that name
    assert raw.tagged(b"d")[1] == b"d OK CREATE completed"
    raw.send(b'e LIST "" "*"\r\n')
    assert b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"' in raw.tagged(b"e")[0]
    still_serves(address, mailbox)


def test_nothing_but_starttls_works_before_tls_and_piped_commands_are_not_trusted(imap_server, mailbox) -> None:
    address = imap_server()
    raw = Raw(address.host, address.port)
    assert b"LOGINDISABLED" in raw.greeting and b"AUTH=PLAIN" not in raw.greeting
    raw.send(f'a LOGIN "{mailbox.address}" "{mailbox.password}"\r\n'.encode())
    assert raw.tagged(b"a")[1].startswith(b"a NO [PRIVACYREQUIRED]")
    raw.send(b"b AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n")
    assert raw.tagged(b"b")[1].startswith(b"b NO [PRIVACYREQUIRED]")
    raw.send(b"c SELECT INBOX\r\n")
    assert raw.tagged(b"c")[1] == b"c BAD Log in first"
    # STARTTLS with a command behind it in the same packet: that command came before TLS
    raw.send(b"d STARTTLS\r\ne CAPABILITY\r\n")
    assert raw.tagged(b"d")[1].startswith(b"d BAD")
    assert raw.closed()
    started = time.monotonic()
    still_serves(address, mailbox)
    assert time.monotonic() - started < 10
