"""IMAP served by a thread of another process: `gentbox run` on a small machine hosts it in the SMTP
process (docs/operations.md, "Processes"), which saves a whole interpreter's private pages."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from appliance.config import Settings
from appliance.db import Store
from appliance.heartbeat import start_heartbeat
from appliance.threads import LoopThread
from imap.server import ImapServer


class ImapThread(LoopThread):
    """Both IMAP listeners on an event loop of their own thread, until stop()."""

    def __init__(self, store: Store, settings: Settings, host: str) -> None:
        self.store, self.settings, self.host = store, settings, host
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def _serve(self, ready: Any) -> None:
        server = ImapServer(self.store, self.settings)
        self._stopping = asyncio.Event()
        try:
            addresses = await server.start(self.host, self.settings.imap_port, self.settings.imaps_port)
        except OSError as exc:
            await server.stop()
            ready(exc)
            return
        heartbeat = start_heartbeat(self.store, "imap")  # `gentbox doctor` shows process.imap from it
        ready(addresses)
        try:
            await self._stopping.wait()
        finally:
            heartbeat.stop()
            await server.stop()

    def _run(self, ready: Any) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve(ready))
        finally:
            self.loop.close()

    def start(self) -> list[tuple[str, int]]:
        """Serve in a background thread; the (host, port) of each listener. Raises OSError when a
        port cannot be bound."""
        return self._start_thread("imap", "IMAP")
