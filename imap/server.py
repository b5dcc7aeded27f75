"""The IMAP listeners: imap_port (STARTTLS before LOGIN) and imaps_port (TLS from the first byte),
one asyncio loop, a thread pool for the store, connection caps per IP and in all, and the wake-up
that IDLE waits on (the event stream's notifier: NOTIFY on PostgreSQL, the counter on SQLite).
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import signal
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.heartbeat import start_heartbeat
from appliance.db import Store
from appliance.services.automation import stream
from imap.protocol import MAX_LINE, Disconnected
from imap.session import Session

log = logging.getLogger("gentbox.imap")

STORE_THREADS = 16
SHUTDOWN_GRACE = 5.0


def ip_key(address: str) -> str:
    """The client's address, an IPv6 one by its /64 (one host has a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        return str(mapped) if mapped else str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context from the appliance's certificate and key (the pair nginx and SMTP use), or
    None when none is set (then IMAP offers no login: LOGINDISABLED, and no TLS port)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"GENTBOX_TLS_CERT_FILE/GENTBOX_TLS_KEY_FILE: cannot load {settings.tls_cert_file} "
                          f"with {settings.tls_key_file}: {exc}") from None
    return context


class Waker:
    """Commits of events, seen by one thread, as a generation number sessions can await."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier = stream.notifier_for(store)
        self.loop = loop
        self.generation = 0
        self._event = asyncio.Event()
        self._stop = threading.Event()
        # One slot held for the process's life keeps the notifier's thread running.
        self.key = f"imap-server:{id(self)}"
        self.notifier.acquire(self.key, 1, 10**6)
        self._thread = threading.Thread(target=self._run, name="imap-waker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        generation, _ = self.notifier.snapshot()
        while not self._stop.is_set():
            now = self.notifier.wait(generation, 0.5)
            if now != generation and not self._stop.is_set():
                generation = now
                try:
                    self.loop.call_soon_threadsafe(self._bump)
                except RuntimeError:  # the loop closed: the server is stopping
                    return

    def _bump(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def changed(self, generation: int) -> int:
        """Wait until a commit after `generation` was seen; the new generation."""
        while self.generation == generation:
            await self._event.wait()
        return self.generation

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.notifier.release(self.key)


class ImapServer:
    """Both listeners of one process and what their sessions share."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.tls_context: ssl.SSLContext | None = server_context(settings)
        self.pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="imap-store")
        self.waker: Waker | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.connections = 0
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.per_account: collections.Counter[str] = collections.Counter()
        self.sessions: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def in_store(self, fn: Callable, *args: Any) -> Any:
        """fn(*args) in the store's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def start(self, host: str, port: int, tls_port: int | None) -> list[tuple[str, int]]:
        """Listen on port (STARTTLS) and tls_port (TLS; None or no certificate: not at all)."""
        self.waker = Waker(self.store, asyncio.get_running_loop())
        plain = await asyncio.start_server(lambda r, w: self._accept(r, w, tls=False), host, port, limit=MAX_LINE)
        self.servers.append(plain)
        if tls_port is not None and self.tls_context is not None:
            secure = await asyncio.start_server(lambda r, w: self._accept(r, w, tls=True), host, tls_port,
                                                ssl=self.tls_context, limit=MAX_LINE, ssl_handshake_timeout=30)
            self.servers.append(secure)
        return [s.sockets[0].getsockname()[:2] for s in self.servers]

    def take_account_slot(self, inbox_id: str) -> bool:
        if self.per_account[inbox_id] >= self.settings.imap_max_sessions_per_account:
            return False
        self.per_account[inbox_id] += 1
        return True

    def release_account_slot(self, inbox_id: str) -> None:
        self.per_account[inbox_id] -= 1
        if self.per_account[inbox_id] <= 0:
            del self.per_account[inbox_id]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        key = ip_key(peer[0])
        if self.connections >= self.settings.imap_max_connections or \
                self.per_ip[key] >= self.settings.imap_max_connections_per_ip:
            await _close(writer, b"* BYE Too many connections; try again later\r\n")
            return
        self.connections += 1
        self.per_ip[key] += 1
        self.writers.add(writer)
        session = Session(self, reader, writer, tls=tls, client_ip=peer[0])
        task = asyncio.current_task()
        self.sessions.add(task)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, Disconnected):
            pass  # a client gone without LOGOUT (or a port probe) is no failure worth a traceback
        except asyncio.CancelledError:  # the server stops: the session ends here, quietly
            await _close(writer, b"* BYE Server shutting down\r\n")
        except Exception:  # noqa: BLE001 - one session's bug must not take the server down
            log.exception("imap: session failed")
            await _close(writer, b"* BYE Internal error\r\n")
        finally:
            session.release()
            self.connections -= 1
            self.per_ip[key] -= 1
            if self.per_ip[key] <= 0:
                del self.per_ip[key]
            await _close(writer, b"")
            self.writers.discard(writer)
            self.sessions.discard(task)  # last: stop() waits for the close above too

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.wait(list(self.sessions), timeout=SHUTDOWN_GRACE)
        for writer in list(self.writers):  # a TLS close still waiting for the peer's close_notify
            writer.transport.abort()
        await asyncio.sleep(0)  # the aborts' connection_lost callbacks close the sockets
        if self.waker is not None:
            self.waker.close()
        self.pool.shutdown(wait=False)


async def _close(writer: asyncio.StreamWriter, last: bytes) -> None:
    try:
        if last:
            writer.write(last)
            await asyncio.wait_for(writer.drain(), 2)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (OSError, asyncio.TimeoutError, asyncio.CancelledError, ssl.SSLError):
        writer.transport.abort()  # the peer is gone, or the server is stopping: drop the socket


def serve_forever(store: Store, settings: Settings, host: str, port: int, tls_port: int,
                  announce: Callable[[list[tuple[str, int]]], None]) -> None:
    """Run both listeners until SIGTERM or SIGINT (`gentbox imap`)."""
    async def main() -> None:
        server = ImapServer(store, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        announce(await server.start(host, port, tls_port))
        heartbeat = start_heartbeat(store, "imap")  # `gentbox doctor` shows process.imap from it
        try:
            await stop.wait()
        finally:
            heartbeat.stop()
            await server.stop()

    asyncio.run(main())
