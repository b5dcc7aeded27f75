"""The live event stream's machinery (issue 15.5): one wake-up source per process, stream slots,
and the Server-Sent Events a stream sends.

Wake-ups. Every open stream of a process waits on one `threading.Condition` of its store's
`Notifier`; a single thread per process wakes them all when events commit:
- PostgreSQL: the commit hook in events.py sends `NOTIFY gentbox_events, '<last seq>'` right after
  its insert, in the same transaction, so PostgreSQL delivers it when (and only if) the events
  commit. The notifier thread holds one dedicated connection with `LISTEN gentbox_events`.
- SQLite: no notifications across processes, so the thread reads the counter's `last_seq` (one
  row) every `event_stream_poll_interval` seconds, for all the process's streams at once.
The thread starts with the first stream and ends a little after the last one closes. Each
wake-up names the inboxes of its events (one DISTINCT query over the new seq range, per process):
a stream reads the store only when its inbox is among them.

No lost wake-up: a stream notes the notifier's `generation` *before* it reads the store and then
waits for the generation to change. A commit its read did not see becomes visible after the read
began, so its wake-up (a notification or the poll that sees it) comes after the note.

Slots: a process has at most `event_stream_max_per_process` open streams and a token at most
`event_stream_max_per_token` in this process; past either, `RateLimitedError` (429 with
Retry-After). A stream holds one web thread for its life, hence the bound.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sqlalchemy import select as sql_select, text

from appliance.errors import RateLimitedError
from appliance.models import EventCounter

log = logging.getLogger("gentbox.stream")

CHANNEL = "gentbox_events"
NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :seq)")
MAX_SCAN = 5000  # events per wake-up whose inboxes are looked up; past it, every stream reads
_INBOXES = text("SELECT DISTINCT inbox_id FROM events WHERE seq > :low AND seq <= :high")
IDLE_GRACE = 5.0  # seconds the notifier thread outlives the last stream (a reconnect reuses it)
RETRY_AFTER = 5  # seconds a refused client is asked to wait


def notify_committed(conn: Any, last_seq: int) -> None:
    """In the commit hook, after the event insert: on PostgreSQL, a notification delivered at commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(NOTIFY, {"seq": str(last_seq)})


# --- shutdown ------------------------------------------------------------------------------------
_alive: Callable[[], bool] = lambda: True  # noqa: E731


def watch_server(alive: Callable[[], bool]) -> None:
    """Streams end cleanly once alive() is false (gunicorn: the worker's `alive` flag, set to False
    by SIGTERM; streams notice within a second and finish their response)."""
    global _alive
    _alive = alive


def server_alive() -> bool:
    """False once the server this process runs in is shutting down."""
    return _alive()


# --- the notifier --------------------------------------------------------------------------------
class Notifier:
    """A process's wake-up source for the streams of one store, and its stream slots."""

    def __init__(self, store: Any) -> None:
        self._store = weakref.ref(store)
        self._postgres = store.engine.dialect.name == "postgresql"
        self._poll = store.settings.event_stream_poll_interval
        self._cond = threading.Condition()
        self.generation = 0  # changes whenever newer events may have committed
        self.last_seq = 0
        # Per generation, the inboxes of the events it added (None: not known, wake everyone),
        # so a stream whose inbox had no new event skips its read of the store.
        self._recent: deque[tuple[int, frozenset | None]] = deque(maxlen=4096)
        self._open = 0
        self._by_key: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._closed = False

    # slots
    def acquire(self, key: str, per_key: int, per_process: int) -> None:
        """Take a stream slot for key (a token), or raise RateLimitedError (429)."""
        with self._cond:
            if self._closed or self._open >= per_process:
                raise RateLimitedError(RETRY_AFTER, "This server has as many event streams open as it allows.",
                                       fix="Retry later, or read GET /v1/events/?after= meanwhile.")
            if self._by_key[key] >= per_key:
                raise RateLimitedError(RETRY_AFTER, f"This token has {per_key} event streams open already.",
                                       fix="Close a stream first; one stream per consumer is enough.")
            self._open += 1
            self._by_key[key] += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-stream-notifier", daemon=True)
                self._thread.start()

    def release(self, key: str) -> None:
        """Give a slot back (called once per acquire)."""
        with self._cond:
            self._open -= 1
            self._by_key[key] -= 1
            if self._by_key[key] <= 0:
                del self._by_key[key]

    @property
    def open_streams(self) -> int:
        return self._open

    # waiting
    def wait(self, generation: int, timeout: float) -> int:
        """Wait until the generation differs from the one given, or timeout; the current one."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != generation or self._closed, timeout)
            return self.generation

    def snapshot(self) -> tuple[int, int]:
        """(generation, last_seq), taken together: events up to last_seq are committed."""
        with self._cond:
            return self.generation, self.last_seq

    def since(self, generation: int, inbox_id: str) -> tuple[int, int, bool]:
        """(generation, last_seq, whether any event of inbox_id, or of unknown inboxes, came in
        the generations after the one given): a stream reads the store only when it is True."""
        with self._cond:
            touched = not self._recent or self._recent[0][0] > generation + 1  # the window lost some
            for gen, inboxes in reversed(self._recent):
                if gen <= generation or touched:
                    break
                touched = inboxes is None or inbox_id in inboxes
            return self.generation, self.last_seq, touched

    def _bump(self, seq: int | None, inboxes: frozenset | None = None) -> None:
        with self._cond:
            if seq is not None:
                self.last_seq = max(self.last_seq, seq)
            self.generation += 1
            self._recent.append((self.generation, inboxes))
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every stream for good (they end) and refuse new ones."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # the thread
    def _idle_for_long(self, since: list[float]) -> bool:
        """True when no stream has been open for IDLE_GRACE seconds (the thread may end)."""
        with self._cond:
            if self._open > 0 and not self._closed:
                since[0] = time.monotonic()
                return False
            return self._closed or time.monotonic() - since[0] > IDLE_GRACE

    def _run(self) -> None:
        since = [time.monotonic()]
        while not self._idle_for_long(since) and self._store() is not None:
            try:
                if self._postgres:
                    self._listen(since)
                else:
                    self._poll_counter(since)
            except Exception:  # noqa: BLE001 - the store is away: keep the streams, try again
                log.warning("event stream: lost the wake-up source; retrying", exc_info=True)
                self._bump(None)  # streams re-read the store (and find out if it is down)
                time.sleep(1.0)

    def _counter(self, conn: Any) -> int:
        return conn.execute(sql_select(EventCounter.last_seq)).scalar() or 0

    def _advance(self, conn: Any, scanned: int | None, last: int) -> int:
        """Wake the streams for the events in (scanned, last], naming their inboxes when the range
        is small (every event up to last is committed, so the query sees them all)."""
        inboxes = None
        if scanned is not None and 0 <= last - scanned <= MAX_SCAN:
            inboxes = frozenset(conn.execute(_INBOXES, {"low": scanned, "high": last}).scalars())
        self._bump(last, inboxes)
        return last

    def _poll_counter(self, since: list[float]) -> None:
        seen = None
        while not self._idle_for_long(since):
            store = self._store()  # not held between polls: a dropped store ends the thread
            if store is None:
                return
            with store.read_engine.connect() as conn:
                last = self._counter(conn)
                if last != seen:
                    seen = self._advance(conn, seen, last)
            del store
            time.sleep(self._poll)

    def _listen(self, since: list[float]) -> None:
        import psycopg

        store = self._store()
        if store is None:
            return
        from appliance.db import libpq_url
        url = libpq_url(store.settings.sqlalchemy_url)  # libpq's own form: several hosts stay several
        with psycopg.connect(url, autocommit=True) as raw, store.read_engine.connect() as conn:
            raw.execute(f"LISTEN {CHANNEL}")
            # Commits before LISTEN took effect sent nobody a notification: look once.
            scanned = self._advance(conn, None, self._counter(conn))
            while not self._idle_for_long(since):
                notes = list(raw.notifies(timeout=0.5, stop_after=1))
                if not notes:
                    continue
                notes += raw.notifies(timeout=0.005)  # a burst of commits: one wake-up for all
                seqs = [int(n.payload) for n in notes if n.payload.isdigit()]
                last = max(seqs) if len(seqs) == len(notes) else self._counter(conn)
                if last > scanned:
                    scanned = self._advance(conn, scanned, last)


_NOTIFIERS: "weakref.WeakKeyDictionary[Any, tuple[int, Notifier]]" = weakref.WeakKeyDictionary()
_NOTIFIERS_LOCK = threading.Lock()


def current_seq(db: Any) -> int:
    """The newest committed seq (the counter): where a stream without a cursor starts."""
    return db.scalar(sql_select(EventCounter.last_seq)) or 0


def notifier_for(store: Any) -> Notifier:
    """The process's notifier for this store (a new one after a fork: threads do not survive it)."""
    with _NOTIFIERS_LOCK:
        found = _NOTIFIERS.get(store)
        if found is None or found[0] != os.getpid():
            found = (os.getpid(), Notifier(store))
            _NOTIFIERS[store] = found
        return found[1]


# --- one stream ----------------------------------------------------------------------------------
@dataclass
class StreamSpec:
    """What one stream sends: the events `read(db, after, limit)` returns, as `render(event)`,
    while `check(db)` (the credential and inbox re-check; raises when they are gone) passes."""

    inbox_id: str
    read: Callable[[Any, int, int], list]
    render: Callable[[Any], dict]
    check: Callable[[Any], None]
    position: int
    keepalive: float
    auth_interval: float
    page: int = 500


def frame(event: dict) -> bytes:
    """One SSE message: id (the seq cursor), event (the type), data (the event's JSON)."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


class EventStream:
    """The response body of one stream: an iterable of SSE chunks that holds a slot until closed.

    A class rather than a bare generator: the WSGI server calls close() even when the body was
    never iterated (the client left before the first byte), and the slot must come back then too."""

    def __init__(self, store: Any, notifier: Notifier, key: str, spec: StreamSpec,
                 peer: socket.socket | None = None) -> None:
        self.store, self.notifier, self.key, self.spec, self.peer = store, notifier, key, spec, peer
        self._released = False
        self._revoked = False  # the credential failed its check before a page was sent
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._run()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if not self._released:
                self._released = True
                self.notifier.release(self.key)

    def _run(self) -> Iterator[bytes]:
        spec, notifier = self.spec, self.notifier
        yield b"retry: 3000\n: connected\n\n"  # sends the headers at once; EventSource's reconnect delay
        position = spec.position
        next_beat = time.monotonic() + spec.keepalive
        next_check = time.monotonic() + spec.auth_interval
        generation, known = notifier.snapshot()  # up to `known`: committed, so visible to the reads below
        touched = True
        while True:
            if touched:
                for chunk, seq in self._catch_up(position):
                    position = seq
                    yield chunk
                if self._revoked:
                    return
            position = max(position, known)  # nothing else up to `known` is ours: skip it next time
            while True:
                now = time.monotonic()
                if notifier.closed or not server_alive() or self._peer_gone():
                    return
                if now >= next_check:
                    if not self._still_allowed():
                        return
                    next_check = now + spec.auth_interval
                if now >= next_beat:
                    yield b": keepalive\n\n"
                    next_beat = now + spec.keepalive
                wait = min(next_beat, next_check) - time.monotonic()
                # 0.5: how soon a gone peer or a shutdown is seen
                if notifier.wait(generation, max(0.0, min(wait, 0.5))) != generation:
                    generation, known, touched = notifier.since(generation, spec.inbox_id)
                    break

    def _catch_up(self, position: int) -> Iterator[tuple[bytes, int]]:
        """Every event after position, oldest first, a page per short read session. A page is sent
        only when the credential, checked after reading it, is still good: the check sees every
        commit the read saw, so a revoked token's stream ends before it sends the revocation's
        own event or any later one (`_revoked`)."""
        while True:
            with self.store.read_sessions() as db:
                rows = [self.spec.render(event) for event in self.spec.read(db, position, self.spec.page)]
                if rows and not self._still_allowed(db):
                    self._revoked = True
                    return
            for event in rows:
                position = event["seq"]
                yield frame(event), position
            if len(rows) < self.spec.page:
                return

    def _still_allowed(self, db: Any = None) -> bool:
        try:
            if db is not None:
                self.spec.check(db)
                return True
            with self.store.read_sessions() as db:
                self.spec.check(db)
            return True
        except Exception:  # noqa: BLE001 - revoked, paused, expired, inbox gone, or store down: end
            log.info("event stream ends: its credential or inbox is no longer valid")
            return False

    def _peer_gone(self) -> bool:
        """True when the client closed its connection (readable, and a peek reads nothing), so a
        stream that has nothing to send does not hold its thread and slot until the next write."""
        if self.peer is None:
            return False
        try:
            readable, _, _ = select.select([self.peer], [], [], 0)
            return bool(readable) and self.peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ValueError):
            return True
