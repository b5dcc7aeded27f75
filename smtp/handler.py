"""The aiosmtpd handler of inbound mail: RCPT and DATA answered from appliance.services.mail.inbound.

The store is synchronous (SQLAlchemy), so store calls run in threads; the event loop only moves
bytes. At the end of DATA a worker thread authenticates and parses the message, then hands it to
the process's one committer (group commit, smtp/committer.py): it stores every message waiting
for it in one transaction and commits once (SQLite synchronous=FULL, PostgreSQL synchronous_commit
on). Each session is answered 250 only after that commit: a crash before it makes the client
retry, a crash after it loses nothing. With several listener processes, the committer is their
parent's (CommitterService; each child's RemoteCommitter hands its messages over a socket pair).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import secrets
import socket
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses
from functools import partial
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.logging_setup import set_log_fields
from appliance.services.governance import caps
from appliance.services.mail import forwarding, inbound, mailauth, sender_rules
from smtp.committer import (MAILBOX_FULL, TEMPORARY_FAILURE, Committer, OutcomeUnknown, RemoteCommitter,
                            storage_failure_reply)

log = logging.getLogger("gentbox.smtp")

# A CR not followed by LF, or an LF not preceded by CR: the ingredients of SMTP smuggling.
BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")

SENDER_REFUSED = "550 5.7.1 The recipient does not accept mail from this sender"
RECIPIENT_CHANGED = "451 4.2.1 A recipient's mailbox changed during the transaction; try again later"


@dataclass(frozen=True)
class Delivery:
    """What the client handed over in one transaction, as the authentication step sees it."""

    raw: bytes
    client_ip: str
    helo: str
    mail_from: str  # "" for the null sender <>
    recipients: dict[str, str]  # inbox id -> the RCPT address that reached it
    deadline: float = float("inf")  # time.monotonic() by which authentication must have ended
    lists: dict[str, str] = field(default_factory=dict)  # distribution list id -> its RCPT address


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
# It runs in the authentication pool and must honour delivery.deadline: past it, it returns at
# once, with temperror for whatever it had not finished (smtp/auth.py).
Authenticator = Callable[[Delivery], AuthenticationOutcome]
AUTH_GRACE = 0.5  # seconds past a delivery's deadline before its authentication is given up on


class InboundEnvelope(Envelope):
    """aiosmtpd's envelope plus the inboxes (and distribution lists) accepted at RCPT time."""

    def __init__(self) -> None:
        super().__init__()
        self.inboxes: dict[str, str] = {}
        self.lists: dict[str, str] = {}
        self.srs: dict[str, str] = {}  # SRS addresses of ours (bounces to forwarded mail) -> original sender
        self.mailbox_rooms: dict[str, caps.MailboxRoom] = {}  # tenant -> its mailbox caps, read at its first RCPT


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
    recipients = [*envelope.inboxes.values(), *envelope.lists.values()]
    # Name the recipient only when there is one: a Bcc'd copy must not reveal the others.
    single = recipients[0] if len(recipients) == 1 else ""
    for_clause = f"\r\n\tfor <{single}>" if single and re.fullmatch(r"[\x21-\x7e]+", single) else ""
    line = (f"Received: from {_header_token(session.host_name or '')} (unknown [{_header_token(ip, 64)}])"
            f"\r\n\tby {settings.hostname} (Gentbox) with {protocol} id {trace_id}{tls}"
            f"{for_clause}; {format_datetime(utcnow())}\r\n")
    return line.encode("ascii")


class PolicyRefused(Exception):
    """The message is not stored, by policy (DMARC, a hosted domain spoofed); reply says why."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def policy_reply(decision: mailauth.Disposition) -> str:
    """The SMTP reply refusing a message that disposition() rejects or defers."""
    if decision.action == "defer":
        return f"451 4.7.1 Message deferred: {decision.reason}; try again later"
    return f"550 5.7.1 Message rejected: {decision.reason}"


class InboundHandler:
    """aiosmtpd hooks for port 25: who may receive (RCPT) and durable storage (DATA)."""

    def __init__(self, store: Store, settings: Settings, executor: Executor, *,
                 authenticate: Authenticator | None = None, auth_executor: Executor | None = None) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor  # RCPT lookups and parsing
        # Authentication waits on DNS: in a pool of its own, so slow DNS never delays RCPT.
        self.auth_executor = auth_executor or executor
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
        if forwarding.is_srs(address):  # issue 20.4: a bounce to mail we forwarded goes back to its sender
            return await self._srs_recipient(envelope, address)
        try:
            decision = await self._in_thread(self._check_recipient, address, envelope.mail_from,
                                             _declared_size(envelope.mail_options), envelope.mailbox_rooms)
        except Exception:  # noqa: BLE001 - any store failure is temporary for the client
            log.exception("smtp: recipient lookup failed for %s", peer_ip(session))
            return "451 4.3.0 Temporary failure looking up the recipient; try again later"
        if not decision.accepted:
            return f"{decision.code} {decision.reply}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if decision.list_id is not None:
            envelope.lists.setdefault(decision.list_id, address)
        else:
            envelope.inboxes.setdefault(decision.inbox_id, address)
        return "250 2.1.5 Ok"

    async def _srs_recipient(self, envelope: InboundEnvelope, address: str) -> str:
        """Accept an SRS address that we made (hash and time valid) on a domain we host."""
        original = forwarding.srs_original(self.settings, address)
        domain = address.rpartition("@")[2].lower()
        if original is None or not await self._in_thread(self._hosted, domain):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.srs[address] = original
        return "250 2.1.5 Ok"

    def _from_allowed(self, delivery: Delivery) -> dict[str, str]:
        """The recipients whose inbound rules admit the header From (each From address, if several)."""
        if not delivery.recipients:
            return {}
        head = BytesHeaderParser().parsebytes(delivery.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        senders = [address for _, address in getaddresses(head.get_all("From") or []) if address]
        with self.store.read_engine.connect() as conn:
            return {inbox_id: address for inbox_id, address in delivery.recipients.items()
                    if all(sender_rules.inbound_allowed(conn, inbox_id, sender) for sender in senders)}

    def _return_srs(self, raw: bytes, originals: list[str]) -> None:
        with self.store.session() as db:
            forwarding.return_bounce(db, self.settings, raw, originals)

    def _check_recipient(self, address: str, mail_from: str | None = None, size: int = 0,
                         rooms: dict[str, caps.MailboxRoom] | None = None) -> inbound.RecipientDecision:
        with self.store.read_engine.connect() as conn:  # no ORM session: this runs for every RCPT
            decision = inbound.check_recipient(conn, address)
            sender = "" if mail_from in (None, "<>") else mail_from
            if decision.inbox_id is not None and not sender_rules.inbound_allowed(conn, decision.inbox_id, sender):
                return inbound.RecipientDecision(None, 550, SENDER_REFUSED[4:])  # issue 20.3: the inbox's rules
            # Issue 22: an inbox at its enforced mailbox cap refuses here, for itself alone (the
            # transaction's other recipients still get the mail); DATA checks the real size. The
            # tenant's caps are read once per transaction (rooms), not once per recipient.
            if decision.inbox_id is not None:
                rooms = {} if rooms is None else rooms
                if decision.tenant_id not in rooms:
                    rooms[decision.tenant_id] = caps.mailbox_room(conn, self.settings, decision.tenant_id)
                if rooms[decision.tenant_id].full(decision.inbox_id, size):
                    return inbound.RecipientDecision(None, 452, MAILBOX_FULL[4:])
            return decision

    async def handle_DATA(self, server: SMTP, session: Session, envelope: InboundEnvelope) -> str:
        raw = envelope.original_content or b""
        if has_bare_line_ending(raw):
            # Another server may read these as line ends (and a "." on its own as the end of
            # DATA): refuse the whole message, so nothing can be smuggled past either of us.
            return "550 5.6.0 Message refused: bare CR or LF (lines must end in CRLF)"
        if envelope.srs:  # stored (queued back to the original senders) before any 250
            try:
                await self._in_thread(self._return_srs, raw, list(envelope.srs.values()))
            except Exception as exc:  # noqa: BLE001 - never 250 for a message that is not stored
                log.exception("smtp: returning mail to SRS addresses from %s failed", peer_ip(session))
                return storage_failure_reply(exc)
            if not envelope.inboxes and not envelope.lists:
                return "250 2.0.0 Ok: returned to the original sender"
        delivery = Delivery(raw=raw, client_ip=peer_ip(session), helo=session.host_name or "",
                            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
                            recipients=dict(envelope.inboxes), lists=dict(envelope.lists),
                            deadline=time.monotonic() + self.settings.mail_auth_deadline)
        trace_id = secrets.token_hex(6).upper()
        set_log_fields(queue_id=trace_id, message_id=None)  # this connection's task only
        received = received_header(self.settings, session, envelope, trace_id)
        self.storing += 1
        try:
            outcome = await self._authenticated(delivery)
            incoming = await self._in_thread(self._prepare, delivery, received, outcome)
            stored = await asyncio.wrap_future(self.committer.submit(incoming))
        except OutcomeUnknown:
            server.transport.abort()  # no answer, as if this process had died with its committer
            return TEMPORARY_FAILURE  # not sent: the connection is gone
        except inbound.RecipientChanged as exc:
            log.info("smtp: %s from %s not stored: %s", trace_id, delivery.client_ip, exc)
            return RECIPIENT_CHANGED
        except PolicyRefused as exc:
            log.info("smtp: %s from %s refused: %s", trace_id, delivery.client_ip, exc.reply)
            return exc.reply
        except inbound.MailboxFull as exc:  # nothing stored, nothing deleted: the sender retries
            log.info("smtp: %s from %s not stored: %s", trace_id, delivery.client_ip, exc)
            return storage_failure_reply(exc)
        except Exception as exc:  # noqa: BLE001 - never 250 for a message that is not stored
            log.exception("smtp: storing message %s from %s failed", trace_id, delivery.client_ip)
            return storage_failure_reply(exc)
        finally:
            self.storing -= 1
        message_ids = [message.id for message in stored]
        set_log_fields(message_id=" ".join(message_ids))
        log.info("smtp: %s from %s stored as %s", trace_id, delivery.client_ip, " ".join(message_ids))
        if not message_ids:  # a list's members all hold it already (or it has none): nothing new to store
            return "250 2.0.0 Ok: already delivered"
        return f"250 2.0.0 Ok: queued as {' '.join(message_ids)}"

    async def _authenticated(self, delivery: Delivery) -> AuthenticationOutcome | None:
        """The authentication hook's outcome, from the authentication pool. Should it not be done
        shortly after the delivery's deadline (the pool busy), it is given up and the hook is
        asked again with the deadline passed, which answers temperror at once without DNS."""
        if self.authenticate is None:
            return None
        context = contextvars.copy_context()
        future = self.auth_executor.submit(context.run, self.authenticate, delivery)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future),
                                          max(delivery.deadline - time.monotonic() + AUTH_GRACE, 0))
        except asyncio.TimeoutError:
            future.cancel()  # not started yet: it never will be
            log.warning("smtp: authentication of mail from %s not done by its deadline", delivery.client_ip)
            return await self._in_thread(self.authenticate, replace(delivery, deadline=float("-inf")))

    def _prepare(self, delivery: Delivery, received: bytes,
                 outcome: AuthenticationOutcome | None) -> inbound.Incoming:
        """Decide (DMARC policy) and parse, in a worker thread: everything before the store's transaction."""
        decision = self._decide(outcome.results if outcome else {})
        recipients = self._from_allowed(delivery)  # issue 20.3: the header From against each inbox's rules
        if not recipients and not delivery.lists:
            raise PolicyRefused(SENDER_REFUSED)
        delivery = replace(delivery, recipients=recipients)
        incoming = inbound.prepare(
            inbox_ids=list(delivery.recipients), envelope_from=delivery.mail_from,
            raw=mailauth.strip_authentication_results(delivery.raw, self.settings.hostname),
            envelope_to=delivery.recipients, client_ip=delivery.client_ip,
            authentication=outcome.results if outcome else None, labels=decision.labels,
            trace_headers=(outcome.header if outcome else b"") + received, lists=delivery.lists)
        if incoming.looped_only:  # RFC 5321 6.3: a loop is refused, not accepted and dropped
            raise PolicyRefused(f"554 5.4.6 Routing loop detected: this message already went through "
                                f"{', '.join(incoming.looped)}")
        return incoming

    def _decide(self, results: dict) -> mailauth.Disposition:
        """The DMARC decision; PolicyRefused when the message is not to be stored."""
        decision = mailauth.disposition(results, reject_action=self.settings.dmarc_reject_action,
                                        hosted=self._hosted)
        if decision.action in ("reject", "defer"):
            raise PolicyRefused(policy_reply(decision))
        return decision

    def _hosted(self, domain: str) -> bool:
        with self.store.read_engine.connect() as conn:
            return mailauth.is_hosted_domain(conn, domain)

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp: unexpected error in a session", exc_info=error)
        return "451 4.3.0 Temporary local error; try again later"


def _declared_size(mail_options: list[str]) -> int:
    """The size MAIL FROM declared (RFC 1870 SIZE=), 0 when none or malformed."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit() and len(value) < 19:
            return int(value)
    return 0


def _utf8_clean(address: str) -> bool:
    """False for an address holding bytes that were not UTF-8 (aiosmtpd keeps them as surrogates)."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
