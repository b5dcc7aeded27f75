"""The one writer of received mail (group commit), moved out of smtp/handler.py.

A listener process hands each parsed message to its Committer, which stores every message waiting
in one transaction and commits once; a session is answered 250 only after that commit. With
several listener processes, their parent runs a CommitterService and each child's RemoteCommitter
hands messages over a socket pair (pickled frames), answering only on "stored".
"""
from __future__ import annotations

import contextlib
import errno
import logging
import pickle
import queue
import socket
import struct
import threading
from concurrent.futures import Future
from functools import partial
from typing import Any

from appliance.db import Store
from appliance.services.mail import inbound

log = logging.getLogger("gentbox.smtp")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message; try again later"
NO_STORAGE = "452 4.3.1 Insufficient system storage; try again later"
MAILBOX_FULL = "452 4.2.2 Mailbox full; try again later"  # an enforced mailbox cap (issue 22): temporary


class OutcomeUnknown(Exception):
    """The committing process went away holding the message: it may have been stored or not.
    Like a crash of a single listener process, the session ends without an answer."""


class StoreRefused(Exception):
    """The shared committer (another process) did not store the message; reply says what to tell."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def storage_failure_reply(exc: BaseException) -> str:
    """451 for a store that failed, 452 when the disk (or the database's space) is full."""
    if isinstance(exc, StoreRefused):
        return exc.reply
    if isinstance(exc, inbound.MailboxFull):
        return MAILBOX_FULL
    text = str(getattr(exc, "orig", None) or exc).lower()
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        needle in text for needle in ("disk is full", "no space left", "could not extend file",
                                      "disk full", "quota exceeded"))
    if not full and getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100":  # PostgreSQL disk_full
        full = True
    return NO_STORAGE if full else TEMPORARY_FAILURE


class Committer:
    """The one writer of received mail in this process (group commit). Sessions hand over parsed
    messages; it stores every message waiting, each in its own savepoint, in one transaction,
    commits once, and only then tells each session its message's outcome. Under load the next
    batch gathers while one commits; alone, a message is committed at once."""

    def __init__(self, store: Store, *, max_batch: int = 100) -> None:
        self.store = store
        self.max_batch = max_batch
        # SQLite: the WAL is checkpointed beside this thread, not inside its commits (db.WalCheckpointer).
        self.checkpointer = store.start_checkpointer()
        self._queue: queue.SimpleQueue[tuple[inbound.Incoming, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="smtp-commit", daemon=True)
        self._thread.start()

    def submit(self, incoming: inbound.Incoming) -> Future:
        """A future for the stored copies of incoming, set only after they are committed."""
        future: Future = Future()
        self._queue.put((incoming, future))
        return future

    def close(self) -> None:
        """Store what was handed over, then stop."""
        self._queue.put(None)
        self._thread.join()
        if self.checkpointer is not None:
            self.checkpointer.stop()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            work = [item for item in batch if item is not None and item[1].set_running_or_notify_cancel()]
            if work:
                self._commit(work)
            if batch[-1] is None:
                return

    def _commit(self, batch: list[tuple[inbound.Incoming, Future]]) -> None:
        try:
            with self.store.writer_turn(), self.store.session() as db:  # commits when the block ends
                outcomes = inbound.store(db, [incoming for incoming, _future in batch], settings=self.store.settings)
        except BaseException as exc:  # noqa: BLE001 - nothing was stored: every session hears why
            for _incoming, future in batch:
                future.set_exception(exc)
            return
        if self.checkpointer is not None:
            self.checkpointer.poke()
        for (_incoming, future), outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


# --- one committer for several listener processes ----------------------------------------------
# With several listener processes (settings.smtp_processes), their parent stores for all of them:
# each child sends its parsed messages over a socket pair to the parent's one Committer and gets
# each outcome back. SQLite has one writer anyway; one committer in a process of its own makes
# larger batches and holds the write lock without competing for the GIL with the children's
# parsing threads (in a child, half the time the committer held the lock went to waiting for
# the GIL). A child answers 250 only when the parent's answer says committed; if the parent dies,
# its children die with it (PR_SET_PDEATHSIG) and nothing unstored was acknowledged.

_FRAME = struct.Struct("!QI")  # request id, payload length


def _send_frame(sock: socket.socket, lock: threading.Lock, request: int, payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_FRAME.pack(request, len(data)) + data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_frame(sock: socket.socket) -> tuple[int, Any] | None:
    """The next frame, or None when the line is closed. (pickle: both ends are this program, the
    socket pair made before the fork.)"""
    header = _recv_exactly(sock, _FRAME.size)
    if header is None:
        return None
    request, size = _FRAME.unpack(header)
    payload = _recv_exactly(sock, size)
    return None if payload is None else (request, pickle.loads(payload))


def _next_frame(sock: socket.socket, peer: str) -> tuple[int, Any] | None:
    """_recv_frame, with a broken or garbled line read as closed."""
    try:
        return _recv_frame(sock)
    except OSError:
        return None
    except Exception:  # noqa: BLE001 - garbled: the line is of no more use
        log.exception("smtp: unreadable frame from %s", peer)
        return None


def _outcome_message(future: Future) -> tuple:
    """What the parent sends back for a settled commit future."""
    exc = future.exception()
    if exc is None:
        return ("stored", future.result())
    if isinstance(exc, inbound.RecipientChanged):
        return ("changed", exc.inbox_id, exc.status)
    if isinstance(exc, inbound.MailboxFull):
        return ("refused", MAILBOX_FULL)
    log.error("smtp: storing a message for a listener process failed", exc_info=exc)
    return ("refused", storage_failure_reply(exc))


class CommitterService:
    """In the listener's parent process: one Committer storing for every child, one thread per
    child reading what it hands over. close() after the children have exited."""

    def __init__(self, store: Store, sockets: list[socket.socket]) -> None:
        self.committer = Committer(store)
        self._readers = []
        for sock in sockets:
            thread = threading.Thread(target=self._serve, args=(sock,), name="smtp-commit-reader", daemon=True)
            thread.start()
            self._readers.append((thread, sock))

    def _serve(self, sock: socket.socket) -> None:
        lock = threading.Lock()  # one frame at a time on the socket
        answering = threading.Condition()
        outstanding = 0  # handed over, not yet answered

        def answer(request: int, future: Future) -> None:
            nonlocal outstanding
            try:
                with contextlib.suppress(OSError):  # the child is gone: it acknowledged nothing
                    _send_frame(sock, lock, request, _outcome_message(future))
            finally:
                with answering:
                    outstanding -= 1
                    answering.notify_all()

        while (frame := _next_frame(sock, "a listener process")) is not None:
            request, incoming = frame
            with answering:
                outstanding += 1
            self.committer.submit(incoming).add_done_callback(partial(answer, request))
        # The child is stopping (or gone): answer what it handed over, then say so.
        with answering:
            answering.wait_for(lambda: outstanding == 0)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for thread, sock in self._readers:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            thread.join()
        self.committer.close()
        for _thread, sock in self._readers:
            sock.close()


class RemoteCommitter:
    """In a listener child: Committer's interface, stored by the parent's CommitterService."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()  # _pending, _next, _closed
        self._send_lock = threading.Lock()  # one frame at a time on the socket
        self._pending: dict[int, Future] = {}
        self._next = 0
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="smtp-commit-remote", daemon=True)
        self._thread.start()

    def submit(self, incoming: inbound.Incoming) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                future.set_exception(StoreRefused(TEMPORARY_FAILURE))
                return future
            self._next += 1
            request = self._next
            self._pending[request] = future
        try:
            _send_frame(self._sock, self._send_lock, request, incoming)
        except OSError:
            self._fail()
        return future

    def _receive(self) -> None:
        while (frame := _next_frame(self._sock, "the committing process")) is not None:
            request, outcome = frame
            with self._lock:
                future = self._pending.pop(request, None)
            if future is None:
                continue
            if outcome[0] == "stored":
                future.set_result(outcome[1])
            elif outcome[0] == "changed":
                future.set_exception(inbound.RecipientChanged(outcome[1], outcome[2]))
            else:
                future.set_exception(StoreRefused(outcome[1]))
        self._fail()

    def _fail(self) -> None:
        """The line to the parent broke: what it held has an unknown outcome; later messages are
        refused with a temporary failure (nothing can store them)."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        if pending:
            log.error("smtp: the committing process is gone with %d messages; their sessions end unanswered",
                      len(pending))
        for future in pending.values():
            if not future.done():
                future.set_exception(OutcomeUnknown())

    def close(self) -> None:
        """Answers for everything handed over arrive first (the parent stores it), then stop."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        self._thread.join(60)
        self._sock.close()
