"""Process heartbeats: each long-running process writes its row every heartbeat_interval seconds.

A daemon thread per process; one short UPDATE (an INSERT the first time) on the store's engine.
A failed beat is logged and tried again at the next interval: it never reaches the mail path.
`gentbox doctor` reads the rows (appliance/doctor.py) to tell which kinds of process are up.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from importlib import metadata
from typing import Callable

from sqlalchemy import delete, insert, update

from appliance.clock import utcnow
from appliance.db import Store
from appliance.models import ProcessHeartbeat

log = logging.getLogger("gentbox.heartbeat")

KINDS = ("web", "smtp", "worker", "imap")
FORGET_AFTER = dt.timedelta(days=7)  # rows of processes gone this long are deleted


def app_version() -> str:
    """The installed package's version ("dev" when running from a tree that is not installed)."""
    try:
        return metadata.version("gentbox")
    except metadata.PackageNotFoundError:
        return "dev"


def stale_after(interval: float) -> float:
    """Seconds after which a process's last beat means it is gone: three missed beats."""
    return 3 * interval + 2


class Heartbeat:
    """The heartbeat of this process, as kind ("web", "smtp", "worker" or "imap")."""

    def __init__(self, store: Store, kind: str, interval: float,
                 report: Callable[[], dict] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown process kind {kind!r}")
        self.store = store
        self.kind = kind
        self.interval = interval
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.started_at = utcnow()
        self.id = f"{kind}:{self.host[:120]}:{self.pid}:{int(self.started_at.timestamp())}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.report = report  # what the process measured, stored with each beat
        self._inserted = False
        self._failing = False

    def beat(self) -> bool:
        """Write this process's row now; False (logged once per outage) when the store refused."""
        now = utcnow()
        try:
            values = {"beat_at": now, **({"metrics": self.report()} if self.report else {})}
            with self.store.engine.begin() as conn:
                if self._inserted:
                    found = conn.execute(update(ProcessHeartbeat).where(ProcessHeartbeat.id == self.id)
                                         .values(**values)).rowcount
                else:
                    found = 0
                if not found:
                    conn.execute(insert(ProcessHeartbeat).values(
                        id=self.id, kind=self.kind, host=self.host, pid=self.pid,
                        started_at=self.started_at, version=app_version(), **values))
                    # Forget processes long gone, so the table stays a few rows per host.
                    conn.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.beat_at < now - FORGET_AFTER))
            self._inserted = True
        except Exception:  # noqa: BLE001 - a heartbeat must never take mail down with it
            if not self._failing:
                log.warning("heartbeat: could not record that this %s process is alive", self.kind,
                            exc_info=True)
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat: recorded again")
        self._failing = False
        return True

    def start(self) -> "Heartbeat":
        """Beat now and then every interval, in a daemon thread, until stop()."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.is_set():
            self.beat()
            next_beat += self.interval
            self._stop.wait(max(0.0, next_beat - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None


def start_heartbeat(store: Store, kind: str, report: Callable[[], dict] | None = None) -> Heartbeat:
    """Start this process's heartbeat as kind, at the store's settings' interval."""
    return Heartbeat(store, kind, store.settings.heartbeat_interval, report).start()
