"""The aiosmtpd handler of inbound mail: RCPT and DATA answered from appliance.services.mail.inbound.

The store is synchronous (SQLAlchemy), so store calls run in threads; the event loop only moves
bytes. At the end of DATA a worker thread authenticates and parses the message, then hands it to
the process's one committer (group commit): it stores every message waiting for it in one
transaction and commits once (SQLite synchronous=FULL, PostgreSQL synchronous_commit on). Each
session is answered 250 only after that commit: a crash before it makes the client retry, a
crash after it loses nothing. With several listener processes, the committer is their parent's
(CommitterService; each child's RemoteCommitter hands its messages over a socket pair).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import logging
import pickle
import queue
import re
import secrets
import socket
import struct
import threading
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from email.utils import format_datetime
from functools import partial
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.logging_setup import set_log_fields
from appliance.services.mail import inbound

log = logging.getLogger("gentbox.smtp")

# A CR not followed by LF, or an LF not preceded by CR: the ingredients of SMTP smuggling.
BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure storing the message; try again later"
NO_STORAGE = "452 4.3.1 Insufficient system storage; try again later"
RECIPIENT_CHANGED = "451 4.2.1 A recipient's mailbox changed during the transaction; try again later"


@dataclass(frozen=True)
class Delivery:
    """What the client handed over in one transaction, as the authentication step sees it."""

    raw: bytes
    client_ip: str
    helo: str
    mail_from: str  # "" for the null sender <>
    recipients: dict[str, str]  # inbox id -> the RCPT address that reached it


@dataclass(frozen=True)
class AuthenticationOutcome:
    """SPF/DKIM/DMARC results for the message's `authentication` field, and the
    Authentication-Results header (CRLF-terminated bytes) to prepend to the stored copy."""

    results: dict
    header: bytes = b""


# The authentication hook (SPF, DKIM, DMARC): called in a worker thread for every message, before
# it is stored; its results go into the message's `authentication` field and its header on top of
# the stored copy. None (the default today) records no results. appliance/services/mail/mailauth.py
# plugs in through Listener(..., authenticate=...), which `gentbox smtp` (appliance/cli.py) builds.
Authenticator = Callable[[Delivery], AuthenticationOutcome]


class InboundEnvelope(Envelope):
    """aiosmtpd's envelope plus the inboxes accepted at RCPT time."""

    def __init__(self) -> None:
        super().__init__()
        self.inboxes: dict[str, str] = {}


def has_bare_line_ending(raw: bytes) -> bool:
    """BARE_LINE_ENDING.search(raw), ten times faster: every CR and every LF is in a CRLF exactly
    when there are as many of each as there are CRLFs."""
    pairs = raw.count(b"\r\n")
    return raw.count(b"\r") != pairs or raw.count(b"\n") != pairs


def peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _header_token(value: str, limit: int = 255) -> str:
    """A client-supplied word made safe for a trace header: printable ASCII, no comment syntax."""
    return re.sub(r"[^\x21-\x7e]|[()\\]", "?", value)[:limit] or "unknown"


def received_header(settings: Settings, session: Session, envelope: InboundEnvelope, trace_id: str) -> bytes:
    """The Received: trace line (RFC 5321 4.4) we add on top of the stored copy."""
    ip = peer_ip(session)
    protocol = ("UTF8SMTP" if envelope.smtp_utf8 else "ESMTP") if session.extended_smtp else "SMTP"
    tls = ""
    if session.ssl:
        protocol += "S"
        ssl_object = session.ssl.get("ssl_object")
        cipher = session.ssl.get("cipher")
        if ssl_object is not None and cipher:
            tls = f"\r\n\t(using {ssl_object.version()} with cipher {cipher[0]})"
    recipients = list(envelope.inboxes.values())
    # Name the recipient only when there is one: a Bcc'd copy must not reveal the others.
    single = recipients[0] if len(recipients) == 1 else ""
    for_clause = f"\r\n\tfor <{single}>" if single and re.fullmatch(r"[\x21-\x7e]+", single) else ""
    line = (f"Received: from {_header_token(session.host_name or '')} (unknown [{_header_token(ip, 64)}])"
            f"\r\n\tby {settings.hostname} (Gentbox) with {protocol} id {trace_id}{tls}"
            f"{for_clause}; {format_datetime(utcnow())}\r\n")
    return line.encode("ascii")


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
                outcomes = inbound.store(db, [incoming for incoming, _future in batch])
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


class InboundHandler:
    """aiosmtpd hooks for port 25: who may receive (RCPT) and durable storage (DATA)."""

    def __init__(self, store: Store, settings: Settings, executor: Executor, *,
                 authenticate: Authenticator | None = None) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor
        self.authenticate = authenticate
        self.storing = 0  # DATA store calls in flight (event-loop thread only); shutdown waits for them
        self.committer: Committer | RemoteCommitter | None = None  # made by start(), in the process that serves

    def start(self, commit_socket: socket.socket | None = None) -> None:
        """Store through a Committer of this process, or, given the socket to a CommitterService
        (the listener's parent), through that."""
        self.committer = RemoteCommitter(commit_socket) if commit_socket is not None else Committer(self.store)

    def stop(self) -> None:
        """After the last DATA: store what was handed over, then stop the committer."""
        if self.committer is not None:
            self.committer.close()
            self.committer = None

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        # In this task's context: store threads log with the message's ids too.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(context.run, func, *args))

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # No AUTH on the inbound listener (submission on :587 is another listener).
        lines = [line for line in responses[:-1] if not line.startswith("250-AUTH")]
        return [*lines, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if not _utf8_clean(address):
            return "553 5.1.7 Bad sender address syntax"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: InboundEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            return "452 4.5.3 Too many recipients"
        if not _utf8_clean(address):
            return "553 5.1.3 Bad recipient address syntax"
        try:
            decision = await self._in_thread(self._check_recipient, address)
        except Exception:  # noqa: BLE001 - any store failure is temporary for the client
            log.exception("smtp: recipient lookup failed for %s", peer_ip(session))
            return "451 4.3.0 Temporary failure looking up the recipient; try again later"
        if not decision.accepted:
            return f"{decision.code} {decision.reply}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.inboxes.setdefault(decision.inbox_id, address)
        return "250 2.1.5 Ok"

    def _check_recipient(self, address: str) -> inbound.RecipientDecision:
        with self.store.read_engine.connect() as conn:  # no ORM session: this runs for every RCPT
            return inbound.check_recipient(conn, address)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: InboundEnvelope) -> str:
        raw = envelope.original_content or b""
        if has_bare_line_ending(raw):
            # Another server may read these as line ends (and a "." on its own as the end of
            # DATA): refuse the whole message, so nothing can be smuggled past either of us.
            return "550 5.6.0 Message refused: bare CR or LF (lines must end in CRLF)"
        delivery = Delivery(raw=raw, client_ip=peer_ip(session), helo=session.host_name or "",
                            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
                            recipients=dict(envelope.inboxes))
        trace_id = secrets.token_hex(6).upper()
        set_log_fields(queue_id=trace_id, message_id=None)  # this connection's task only
        received = received_header(self.settings, session, envelope, trace_id)
        self.storing += 1
        try:
            incoming = await self._in_thread(self._prepare, delivery, received)
            stored = await asyncio.wrap_future(self.committer.submit(incoming))
        except OutcomeUnknown:
            server.transport.abort()  # no answer, as if this process had died with its committer
            return TEMPORARY_FAILURE  # not sent: the connection is gone
        except inbound.RecipientChanged as exc:
            log.info("smtp: %s from %s not stored: %s", trace_id, delivery.client_ip, exc)
            return RECIPIENT_CHANGED
        except Exception as exc:  # noqa: BLE001 - never 250 for a message that is not stored
            log.exception("smtp: storing message %s from %s failed", trace_id, delivery.client_ip)
            return storage_failure_reply(exc)
        finally:
            self.storing -= 1
        message_ids = [message.id for message in stored]
        set_log_fields(message_id=" ".join(message_ids))
        log.info("smtp: %s from %s stored as %s", trace_id, delivery.client_ip, " ".join(message_ids))
        return f"250 2.0.0 Ok: queued as {' '.join(message_ids)}"

    def _prepare(self, delivery: Delivery, received: bytes) -> inbound.Incoming:
        """Authenticate and parse (in a worker thread): everything before the store's transaction."""
        outcome = self.authenticate(delivery) if self.authenticate is not None else None
        return inbound.prepare(
            inbox_ids=list(delivery.recipients), raw=delivery.raw, envelope_from=delivery.mail_from,
            envelope_to=delivery.recipients, client_ip=delivery.client_ip,
            authentication=outcome.results if outcome else None,
            trace_headers=(outcome.header if outcome else b"") + received)

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp: unexpected error in a session", exc_info=error)
        return "451 4.3.0 Temporary local error; try again later"


def _utf8_clean(address: str) -> bool:
    """False for an address holding bytes that were not UTF-8 (aiosmtpd keeps them as surrogates)."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
