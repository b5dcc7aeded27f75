"""Fixture factories for the SMTP listener tests: a real listener in this process on port 0, and
small clients that speak SMTP over a raw socket (for what smtplib will not send).

Test modules import the fixtures they use from here:
    from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401
"""
from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.config import Settings
from appliance.db import Store
from appliance.models import Message, MessageRaw
from smtp.server import Listener
from smtp.tls import write_self_signed


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for mail.gentbox.test, made once per test run."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    write_self_signed(cert, key, "mail.gentbox.test")
    return cert, key


@pytest.fixture
def smtp_listener(store: Store, settings: Settings, tls_files: tuple[Path, Path]):
    """Start a listener on 127.0.0.1, port 0, with this test's store and settings (STARTTLS on),
    or with the store and settings given; returns (host, port). Stopped after the test."""
    started: list[Listener] = []

    def start(*, store: Store = store, settings: Settings = settings, tls: bool = True,
              **kwargs) -> tuple[str, int]:
        cert, key = tls_files if tls else (None, None)
        settings = settings.model_copy(update={"tls_cert_file": cert, "tls_key_file": key})
        listener = Listener(store, settings, host="127.0.0.1", port=0, **kwargs)
        address = listener.start()
        started.append(listener)
        return address

    yield start
    for listener in started:
        listener.stop()


def client(address: tuple[str, int]) -> smtplib.SMTP:
    """An smtplib client connected to address, after EHLO."""
    smtp = smtplib.SMTP(*address, local_hostname="client.example", timeout=30)
    smtp.ehlo()
    return smtp


class RawClient:
    """SMTP over a plain socket: send exact bytes, read whole replies."""

    def __init__(self, address: tuple[str, int], timeout: float = 15) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """The next complete reply (multi-line joined), or (0, "") once the server closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return (0, "") if not lines else (int(lines[-1][:3]), "\n".join(lines))
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    def command(self, line: bytes) -> tuple[int, str]:
        self.send(line)
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (after any buffered replies)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stored(store: Store, **where) -> list[tuple[Message, bytes]]:
    """Stored messages (with raw bytes) matching column=value filters, oldest first."""
    with store.read_sessions() as db:
        query = select(Message, MessageRaw.raw).join(MessageRaw, MessageRaw.message_id == Message.id)
        for column, value in where.items():
            query = query.where(getattr(Message, column) == value)
        return [(m, bytes(raw)) for m, raw in db.execute(query.order_by(Message.id)).all()]


def message_bytes(subject: str, to: str, *, sender: str = "alice@sender.example", body: str = "Hello.",
                  message_id: str | None = None) -> bytes:
    """A small RFC 5322 message with CRLF line ends, ending in CRLF."""
    message_id = message_id or f"<{time.time_ns()}.{abs(hash(subject))}@sender.example>"
    return (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: {message_id}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
