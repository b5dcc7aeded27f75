"""Fixture factories for the IMAP tests: a real IMAP server (both listeners, port 0) in a thread
of this process with the test's store, and a mailbox to log in to.

    from tests.integration.imap_fixtures import imap_server, mailbox, tls_files  # noqa: F401
"""
from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.db import Store
from imap.server import ImapServer
from tests.integration.smtp_fixtures import tls_files  # noqa: F401
from tests.world import PASSWORD


@dataclass
class ImapAddress:
    host: str
    port: int  # STARTTLS
    tls_port: int  # TLS from the first byte
    server: ImapServer


class _Running:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ImapServer(store, settings)
        self.thread = threading.Thread(target=self.loop.run_forever, name="imap-test-loop", daemon=True)
        self.thread.start()
        ports = asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0, 0), self.loop).result(30)
        self.address = ImapAddress("127.0.0.1", ports[0][1], ports[1][1], self.server)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def imap_server(store: Store, settings: Settings, tls_files: tuple[Path, Path]):  # noqa: F811
    """Start an IMAP server on 127.0.0.1 (port 0 for both listeners) with the test's store and
    settings (plus the test certificate and any overrides); returns an ImapAddress."""
    started: list[_Running] = []

    def start(*, store: Store = store, settings: Settings = settings, **overrides) -> ImapAddress:
        cert, key = tls_files
        settings = settings.model_copy(update={"tls_cert_file": cert, "tls_key_file": key, **overrides})
        running = _Running(store, settings)
        started.append(running)
        return running.address

    yield start
    for running in started:
        running.stop()


def client_context() -> ssl.SSLContext:
    """A client TLS context that accepts the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Mailbox:
    inbox_id: str
    address: str
    password: str
    owner: object


@pytest.fixture
def mailbox(world) -> Mailbox:
    """An owner with one inbox: what a mail client logs in with."""
    owner = world.owner()
    address = f"people{owner.tenant_id.lower()[-6:]}@imap.example"
    inbox_id = world.inbox(owner, address)
    return Mailbox(inbox_id, address, PASSWORD, owner)
