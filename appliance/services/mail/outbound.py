"""Outbound mail: sending (store + queue in one transaction), the worker's claims, recording each
recipient's outcome, retries on a growing schedule, and RFC 3464 bounces into the sending inbox.

The queue lives in the store, so any worker may crash: a claimed row carries a lease, and a row
whose lease ran out is claimed again (at least once, never lost). On PostgreSQL claims use
FOR UPDATE SKIP LOCKED, so several workers never claim the same row; on SQLite every writer
holds the database's write lock (BEGIN IMMEDIATE), which makes each claim atomic.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import begin_writes
from appliance.errors import ConflictError, NotFoundError
from appliance.ids import new_id
from appliance.models import (Attachment, Domain, Inbox, Message, MessageRaw, OutboundQueue, OutboundRecipient,
                              SystemMail, Thread)
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.domains import dkim
from appliance.services.governance import approvals, caps, usage
from appliance.services.identity.auth import Principal
from appliance.services.mail import compose, inbound, message_rows, sender_rules
from appliance.services.mail.mime import ParsedMessage, parse_message
from appliance.services.workspace import blobs, contacts

PENDING = ("queued", "deferred")
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def wire_bytes(raw: bytes) -> bytes:
    """raw with CRLF line ends only (RFC 5322 2.3): strict receivers refuse a bare LF or CR, and the
    `email` package's default policy writes LF. Every queued message passes here, whatever built it."""
    return _LINE_END.sub(b"\r\n", raw)


# --- sending --------------------------------------------------------------------------------
def send(db: Session, settings: Settings, principal: Principal, inbox: Inbox,
         request: compose.SendRequest, *, priority: int = 0) -> Message:
    """POST /v1/messages/ (and any other way an agent sends): compose, sign, store and queue in
    the caller's unit of work. When the caller's token holds email:send for approval, the composed
    message is stored unsigned with status held and an approval is filed instead: nothing is
    queued until a person approves it (approvals.approve), whatever the path that sent it."""
    require_active(inbox)
    original = None
    if request.reply_to_message_id is not None:
        original = tenancy.find_owned(db, Message, inbox.tenant_id, Message.id == request.reply_to_message_id,
                                      Message.inbox_id == inbox.id)
        if original is None:
            raise NotFoundError("No such message in this inbox to reply to.", field="reply_to_message_id")
    now = utcnow()
    # Held here: the session keeps only weak references, so compose's and dispatch's lookups would
    # each load it again.
    domain = db.get(Domain, inbox.domain_id)
    composed = compose.compose(db, settings, inbox, request, original, now)
    names = {r.email.lower(): r.name for r in request.to + request.cc + request.bcc}
    return dispatch(db, settings, principal, inbox, composed, now, names=names, priority=priority, domain=domain)


def require_active(inbox: Inbox, status: str | None = None) -> None:
    """A paused (or deleted) inbox sends nothing: 409 before any work is done (status: the inbox's
    status as read again, None when its row is gone)."""
    status = inbox.status if status is None else status
    if status != "active":
        raise ConflictError(f"{inbox.address} is {status}; it sends nothing until it is resumed.",
                            fix="Resume the inbox (PATCH /v1/inboxes/{id}/ with status active).")


def dispatch(db: Session, settings: Settings, principal: Principal, inbox: Inbox, composed: compose.Composed,
             now: dt.datetime, *, names: dict[str, str] | None = None, priority: int = 0,
             domain: Domain | None = None) -> Message:
    """The one way a composed message leaves (the API's, SMTP submission's, every automatic
    sender's): held when the caller's email:send is held, else charged to the caps, DKIM-signed,
    stored in the inbox as sent and queued, all in the caller's unit of work. The inbox's outbound
    sender rules apply to every sender, held or not (403 recipient_not_allowed).

    Signing and parsing the sent copy come before the first write (`begin_writes`): in the API's
    late-write unit of work they then run beside other sends instead of under SQLite's write lock."""
    sender_rules.check_outbound(db, inbox, composed.recipients)  # issue 20.3
    domain = domain or db.get(Domain, inbox.domain_id)
    key = _signing_key(db, settings, domain)
    if approvals.required(principal, "email:send"):
        _begin_writes(db, inbox)
        return _hold(db, settings, principal, inbox, composed, now)
    raw = dkim.sign_with_keys(composed.raw, domain.name, key, compose.SIGNED, expiry=settings.dkim_expiry)
    # The signed copy's fields are the composed message's (DKIM-Signature is not one of them).
    parsed = composed.parsed or parse_message(raw)
    _begin_writes(db, inbox)
    # Caps before anything is stored or queued: counted in this transaction, undone with it on a 429.
    _charge(db, settings, inbox, principal.token.id if principal.is_agent else None, composed.recipients, now)
    message = store_outbound(db, inbox, raw, thread_id=composed.thread_id, now=now, parsed=parsed)
    enqueue(db, settings, mail_from=composed.mail_from, recipients=composed.recipients, now=now,
            message=message, priority=priority)
    contacts.record_sent(db, inbox, composed.recipients, names or {}, now)  # auto-contacts (issue 17)
    events.emit(db, "message.sent", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=message.id,
                actor=principal.id, payload={"thread_id": message.thread_id, "subject": message.subject[:200],
                                             "recipients": composed.recipients})
    return message


def _begin_writes(db: Session, inbox: Inbox) -> None:
    """The write phase begins (see `begin_writes`): the inbox's status is read again, because the
    inbox may have been paused while the message was composed and signed, and a paused inbox sends
    nothing (on SQLite under the write lock, so no pause can fall between this and the commit)."""
    begin_writes(db)
    status = db.scalar(_STATUS, {"inbox_id": inbox.id})
    require_active(inbox, status or "deleted")


_STATUS = select(Inbox.__table__.c.status).where(Inbox.__table__.c.id == bindparam("inbox_id"))


def _charge(db: Session, settings: Settings, inbox: Inbox, token_id: str | None, recipients: list[str],
            now: dt.datetime) -> None:
    """Send caps (every level must allow; 429 send_cap_reached), the spend cap when a priced
    smarthost sends (403 cap_reached), and the sends meter, per recipient."""
    caps.charge_sends(db, settings, tenant_id=inbox.tenant_id, inbox_id=inbox.id, token_id=token_id,
                      count=len(recipients), now=now)
    caps.check_spend(db, settings, tenant_id=inbox.tenant_id, cost=caps.smarthost_cost(settings, len(recipients)))
    usage.record(db, inbox.tenant_id, usage.SENDS, len(recipients), inbox_id=inbox.id, now=now)


def _signing_key(db: Session, settings: Settings, domain: Domain) -> list[dkim.SigningKey]:
    """The domain's active keys (RSA, and Ed25519 once its record is published); RSA is required."""
    key = dkim.signing_keys(db, settings, domain.id)
    if not any(k.algorithm == "rsa" for k in key):
        raise ConflictError(f"{domain.name} has no active DKIM key, so its mail would not be trusted.",
                            fix="Verify the domain (POST /v1/domains/{id}/verify/) to activate its key.")
    return key


# --- held sends (issue 8) -------------------------------------------------------------------
HELD_PREVIEW_LINES = 5


def _hold(db: Session, settings: Settings, principal: Principal, inbox: Inbox, composed: compose.Composed,
          now: dt.datetime) -> Message:
    """Store the composed message, unsigned, as held, with its approval; queue nothing."""
    message = store_outbound(db, inbox, composed.raw, thread_id=composed.thread_id, now=now, status="held",
                             parsed=composed.parsed)
    lines = [line for line in (message.text_body or message.snippet or "").splitlines() if line.strip()]
    summary = {"message_id": message.id, "thread_id": message.thread_id, "recipients": composed.recipients,
               "subject": message.subject[:300], "first_lines": "\n".join(lines[:HELD_PREVIEW_LINES])[:1000],
               "attachments": list(db.scalars(select(Attachment.filename).where(Attachment.message_id == message.id)
                                              .order_by(Attachment.id)))}
    approvals.request_approval(db, settings, principal, inbox, "email:send", resource_id=message.id,
                               summary=summary, payload={"mail_from": composed.mail_from,
                                                         "recipients": composed.recipients}, now=now)
    return message


def release_held(db: Session, settings: Settings, approval, principal: Principal, now: dt.datetime) -> None:  # noqa: ANN001
    """An approved send: DKIM-sign the held bytes as they are, queue them, announce message.sent."""
    message = db.get(Message, approval.resource_id, with_for_update=True) if approval.resource_id else None
    if message is None or message.status != "held":
        raise ConflictError("The held message no longer exists, so there is nothing to send.",
                            fix="Reject the approval.")
    inbox = db.get(Inbox, message.inbox_id)
    if inbox is None or inbox.status != "active":
        raise ConflictError("The sending inbox is not active; it sends nothing until it is resumed.",
                            fix="Resume the inbox (PATCH /v1/inboxes/{id}/ with status active), then approve.")
    domain = db.get(Domain, inbox.domain_id)
    key = _signing_key(db, settings, domain)
    recipients = list(approval.payload["recipients"])
    _charge(db, settings, inbox, approval.token_id, recipients, now)  # the caps of the token that asked
    stored = db.get(MessageRaw, message.id)
    signed = dkim.sign_with_keys(bytes(stored.raw), domain.name, key, compose.SIGNED, expiry=settings.dkim_expiry)
    usage.record(db, inbox.tenant_id, usage.MAILBOX_BYTES, len(signed) - message.size, inbox_id=inbox.id, now=now)
    stored.raw, message.size = signed, len(signed)
    message.status, message.sent_at = "queued", now
    enqueue(db, settings, mail_from=approval.payload["mail_from"], recipients=recipients, now=now, message=message)
    contacts.record_sent(db, inbox, recipients, {}, now)  # auto-contacts (issue 17)
    events.emit(db, "message.sent", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=message.id,
                actor=principal.id, payload={"thread_id": message.thread_id, "subject": message.subject[:200],
                                             "recipients": recipients, "approval_id": approval.id})


def discard_held(db: Session, approval, status: str, now: dt.datetime) -> None:  # noqa: ANN001
    """A rejected or expired send: the held message stays visible with that status, never queued."""
    message = db.get(Message, approval.resource_id, with_for_update=True) if approval.resource_id else None
    if message is not None and message.status == "held":
        message.status = status


def register_approval_handlers() -> None:
    """Held sends go ahead or are dropped through these (called at start by register_handlers)."""
    approvals.register_action("email:send", approvals.ActionHandler(release=release_held, discard=discard_held))


def store_outbound(db: Session, inbox: Inbox, raw: bytes, *, thread_id: str | None,
                   now: dt.datetime, status: str = "queued", parsed: ParsedMessage | None = None) -> Message:
    """The sent copy in the sending inbox (parsed like received mail, so it reads the same; parsed
    is raw's parse when the caller already made it). Every row is a Core insert, no unit-of-work
    bookkeeping; the message comes back as the session's loaded object, for callers to read and change."""
    parsed = parse_message(raw) if parsed is None else parsed
    thread = db.get(Thread, thread_id) if thread_id else None
    new_thread = thread is None
    if new_thread:  # a new conversation starts with this message counted in
        thread_id = new_id("thr")
        db.execute(_INSERT_THREAD, {**message_rows.thread_row(thread_id=thread_id, tenant_id=inbox.tenant_id,
                                                             inbox_id=inbox.id, subject=parsed.subject, now=now),
                                    "message_count": 1})
    row = {**message_rows.message_row(
        parsed, message_id=new_id("msg"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, thread_id=thread_id,
        direction="outbound", status=status, size=len(raw), now=now, is_read=True, envelope_from=inbox.address,
        sent_at=None if status == "held" else now), "enrichment": None}
    db.execute(_INSERT_MESSAGE, row)
    message = Message(**row)
    # The session's object for the row just inserted, as if loaded (every column set: nothing to
    # read back); callers read it and change it like any loaded message.
    make_transient_to_detached(message)
    db.add(message)
    db.execute(_INSERT_RAW, {"message_id": message.id, "raw": raw})
    usage.record(db, inbox.tenant_id, usage.MAILBOX_BYTES, len(raw), inbox_id=inbox.id, now=now)
    attachments = message_rows.attachment_rows(parsed, message.id)
    if attachments:
        blobs.store_attachments(db, attachments, [(message.tenant_id, message.inbox_id)] * len(attachments))
        db.execute(_INSERT_ATTACHMENT, attachments)
    if not new_thread:  # (ORM-enabled: the thread loaded in this session sees the new count)
        db.execute(update(Thread).where(Thread.id == thread_id)
                   .values(message_count=Thread.message_count + 1, last_message_at=now))
    inbound.index_message(db, message.id, inbox.id, inbound.search_head(parsed, inbox.address), parsed.text)
    return message


# Built once: the send path's Core statements (a statement built per call costs more than it runs).
_INSERT_THREAD = insert(Thread.__table__)
_INSERT_MESSAGE = insert(Message.__table__)
_INSERT_RAW = insert(MessageRaw.__table__)
_INSERT_ATTACHMENT = insert(Attachment.__table__)
_INSERT_QUEUE = insert(OutboundQueue.__table__)
_INSERT_RECIPIENT = insert(OutboundRecipient.__table__)


def enqueue(db: Session, settings: Settings, *, mail_from: str, recipients: list[str], now: dt.datetime,
            message: Message | None = None, system_mail: SystemMail | None = None,
            priority: int = 0) -> list[str]:
    """One queue row per recipient domain, one recipient row per address, due now (priority 1:
    a broadcast's, claimed after every due priority-0 row); each kind in one statement. Returns
    the queue rows' ids."""
    if system_mail is not None:
        system_mail.raw = wire_bytes(system_mail.raw)
    if db.new:
        db.flush()  # the message or system mail the rows name is stored first (Core inserts do not flush)
    by_domain: dict[str, list[str]] = {}
    for address in recipients:
        by_domain.setdefault(address.rpartition("@")[2].lower(), []).append(address)
    message_id = message.id if message else None
    queue, rcpts = [], []
    for domain, addresses in by_domain.items():
        queue.append({"id": new_id("oq"), "message_id": message_id,
                      "system_mail_id": system_mail.id if system_mail else None,
                      "tenant_id": message.tenant_id if message else None,
                      "inbox_id": message.inbox_id if message else None, "domain": domain, "mail_from": mail_from,
                      "status": "queued", "attempts": 0, "next_attempt_at": now, "lease_until": None,
                      "lease_owner": "", "last_reply": "", "delay_notified": False, "created_at": now,
                      "expires_at": now + dt.timedelta(seconds=settings.queue_lifetime), "finished_at": None,
                      "priority": priority})
        rcpts += [{"id": new_id("orc"), "queue_id": queue[-1]["id"], "message_id": message_id,
                   "position": len(rcpts) + i, "recipient": address, "status": "queued", "attempts": 0,
                   "last_attempt_at": None, "smtp_reply": "", "remote_host": ""} for i, address in enumerate(addresses)]
    if queue:
        db.execute(_INSERT_QUEUE, queue)
        db.execute(_INSERT_RECIPIENT, rcpts)
    return [row["id"] for row in queue]


def enqueue_system_mail(db: Session, settings: Settings) -> int:
    """Queue the appliance's own mail (sign-up links) that is not queued yet; returns how many."""
    queued = select(OutboundQueue.system_mail_id).where(OutboundQueue.system_mail_id.is_not(None))
    waiting = db.scalars(select(SystemMail).where(SystemMail.status == "queued", SystemMail.id.not_in(queued))
                         .order_by(SystemMail.id).limit(500)).all()
    now = utcnow()
    for mail in waiting:
        enqueue(db, settings, mail_from=mail.mail_from, recipients=[mail.rcpt_to.lower()], now=now, system_mail=mail)
    return len(waiting)


# --- the worker's side ----------------------------------------------------------------------
@dataclass
class Job:
    """One claimed queue row: what a delivery attempt needs, read in the claiming transaction."""

    queue_id: str
    domain: str
    mail_from: str
    raw: bytes
    recipients: dict[str, str]  # recipient row id -> address (only those still pending)
    local: bool  # the domain is hosted here: delivered without SMTP
    lease_owner: str
    message_id: str = ""  # the sent message ("" for system mail): the worker records in its order


@dataclass(frozen=True)
class Reply:
    """One recipient's outcome of an attempt: the SMTP reply (or our own words for it)."""

    code: int
    text: str
    host: str = ""

    @property
    def line(self) -> str:
        return " ".join(f"{self.code} {self.text}".split())[:1000]


def claim(db: Session, settings: Settings, *, owner: str, limit: int, now: dt.datetime | None = None) -> list[Job]:
    """Lease up to limit due rows to owner and load what delivering them needs."""
    now = now or utcnow()
    due = or_(and_(OutboundQueue.status.in_(PENDING), OutboundQueue.next_attempt_at <= now),
              and_(OutboundQueue.status == "delivering", OutboundQueue.lease_until < now))
    # Priority first, so a reply sent after a large broadcast goes out in the next pass (issue 16.2).
    query = select(OutboundQueue).where(due).order_by(OutboundQueue.priority, OutboundQueue.next_attempt_at,
                                                      OutboundQueue.id).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = db.scalars(query).all()
    if not rows:
        return []
    lease_until = now + dt.timedelta(seconds=settings.queue_lease)
    db.execute(update(OutboundQueue).where(OutboundQueue.id.in_([r.id for r in rows]))
               .values(status="delivering", lease_until=lease_until, lease_owner=owner))
    # Hosted means verified: anyone may claim a name, but until a tenant proves it owns it in DNS,
    # mail for it (everyone's, sign-up links included) goes to its real MX, not to a local bounce.
    hosted = set(db.scalars(select(Domain.name).where(Domain.name.in_({r.domain for r in rows}),
                                                      Domain.status == "verified")))
    pending = {}
    for rcpt in db.scalars(select(OutboundRecipient).where(OutboundRecipient.queue_id.in_([r.id for r in rows]),
                                                           OutboundRecipient.status.in_(PENDING))
                           .order_by(OutboundRecipient.position)):
        pending.setdefault(rcpt.queue_id, {})[rcpt.id] = rcpt.recipient
    jobs = []
    for row in rows:
        raw = _raw_of(db, row)
        jobs.append(Job(queue_id=row.id, domain=row.domain, mail_from=row.mail_from, raw=raw,
                        recipients=pending.get(row.id, {}), local=row.domain in hosted, lease_owner=owner,
                        message_id=row.message_id or ""))
    return jobs


def _raw_of(db: Session, row: OutboundQueue) -> bytes:
    """The bytes a queue row sends, with CRLF line ends (also for rows queued before wire_bytes)."""
    if row.message_id:
        raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == row.message_id))
    else:
        raw = db.scalar(select(SystemMail.raw).where(SystemMail.id == row.system_mail_id))
    return wire_bytes(bytes(raw or b""))


def deliver_locally(db: Session, settings: Settings, job: Job) -> dict[str, Reply]:
    """Hosted recipients: the inbound rules (active inbox, paused -> retry, unknown -> bounce) and
    storage, in the caller's transaction, which also records the outcome: exactly once."""
    outcomes: dict[str, Reply] = {}
    accepted: dict[str, str] = {}
    lists: dict[str, str] = {}  # distribution lists: their members get a copy each
    for rcpt_id, address in job.recipients.items():
        decision = inbound.check_recipient(db, address)
        if decision.list_id is not None:
            lists.setdefault(decision.list_id, address)
            outcomes[rcpt_id] = Reply(250, "2.0.0 Delivered locally", settings.hostname)
        elif decision.accepted:
            accepted.setdefault(decision.inbox_id, address)
            outcomes[rcpt_id] = Reply(250, "2.0.0 Delivered locally", settings.hostname)
        else:
            outcomes[rcpt_id] = Reply(decision.code, decision.reply, settings.hostname)
    if accepted or lists:
        trace = (f"Received: by {settings.hostname} (Gentbox) with local id {secrets.token_hex(6).upper()};"
                 f" {format_datetime(utcnow())}\r\n").encode("ascii")
        try:
            inbound.receive(db, inbox_ids=list(accepted), raw=job.raw, envelope_from=job.mail_from,
                            envelope_to=accepted, trace_headers=trace, lists=lists, settings=settings)
        except caps.MailboxFull:  # a mailbox at its enforced cap: retried later, like SMTP's 452
            full = Reply(452, "4.2.2 Mailbox full; try again later", settings.hostname)
            outcomes = {r: (full if outcomes[r].code == 250 else outcomes[r]) for r in outcomes}
    return outcomes


def retry_delay(settings: Settings, attempts: int) -> dt.timedelta:
    """The wait after the attempts-th failed attempt (1-based); the schedule's last value repeats."""
    schedule = settings.retry_schedule
    return dt.timedelta(seconds=schedule[min(max(attempts, 1), len(schedule)) - 1])


def record(db: Session, settings: Settings, job: Job, outcomes: dict[str, Reply],
           now: dt.datetime | None = None) -> bool:
    """Write one attempt's outcomes. False (and nothing written) when the lease was lost, i.e.
    another worker took the row after ours ran out."""
    now = now or utcnow()
    row = db.get(OutboundQueue, job.queue_id)
    if row is None or row.status != "delivering" or row.lease_owner != job.lease_owner:
        return False
    # One message's rows (one per recipient domain) are recorded by parallel threads: lock the
    # message first, so each sees the others' committed outcomes when it works out the status.
    message = db.get(Message, row.message_id, with_for_update=True) if row.message_id else None
    expired = now >= row.expires_at
    row.attempts += 1
    recipients = {r.id: r for r in db.scalars(select(OutboundRecipient).where(OutboundRecipient.queue_id == row.id))}
    delivered, deferred, bounced = [], [], []
    for rcpt_id, reply in outcomes.items():
        rcpt = recipients.get(rcpt_id)
        if rcpt is None or rcpt.status not in PENDING:
            continue
        rcpt.attempts += 1
        rcpt.last_attempt_at = now
        rcpt.smtp_reply = reply.line
        rcpt.remote_host = reply.host[:255]
        if 200 <= reply.code < 300:
            rcpt.status = "delivered"
            delivered.append(rcpt)
        elif reply.code >= 500 or expired:
            rcpt.status = "bounced"
            if reply.code < 500:
                rcpt.smtp_reply = f"{reply.line} (gave up after {_age(now - row.created_at)})"[:1000]
            bounced.append(rcpt)
        else:
            rcpt.status = "deferred"
            deferred.append(rcpt)
    row.last_reply = (outcomes and next(iter(outcomes.values())).line) or ""
    row.lease_until, row.lease_owner = None, ""
    if any(r.status in PENDING for r in recipients.values()):
        row.status = "deferred"
        row.next_attempt_at = min(now + retry_delay(settings, row.attempts), max(row.expires_at, now))
    else:
        row.status, row.finished_at = "done", now
    if message is not None:
        _announce(db, message, delivered, deferred, bounced, row)
        if bounced:
            _bounce(db, settings, message, row, bounced, action="failed", now=now)
        elif deferred and not row.delay_notified and settings.delay_notice_after and \
                now - row.created_at >= dt.timedelta(seconds=settings.delay_notice_after):
            row.delay_notified = True
            _bounce(db, settings, message, row, deferred, action="delayed", now=now)
        message.status = message_status(db, message.id)
    elif row.system_mail_id and row.status == "done":
        mail = db.get(SystemMail, row.system_mail_id)
        if mail is not None:
            ok = all(r.status == "delivered" for r in recipients.values())
            # The raw holds a one-time sign-up link: once handed over (or given up), keep no copy.
            mail.status, mail.sent_at, mail.raw = ("sent" if ok else "failed"), now, b""
            mail.meta = {**(mail.meta or {}), "smtp_reply": row.last_reply}
    return True


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _announce(db: Session, message: Message, delivered: list, deferred: list, bounced: list,
              row: OutboundQueue) -> None:
    for type_, group in (("message.delivered", delivered), ("message.deferred", deferred),
                         ("message.bounced", bounced)):
        if group:
            events.emit(db, type_, tenant_id=message.tenant_id, inbox_id=message.inbox_id, resource_id=message.id,
                        payload={"recipients": [r.recipient for r in group],
                                 "smtp_reply": group[0].smtp_reply[:300], "attempts": row.attempts})


def message_status(db: Session, message_id: str) -> str:
    """queued (nothing tried), sending, sent (all delivered), partially_delivered or bounced."""
    rows = db.execute(select(OutboundRecipient.status, OutboundRecipient.attempts)
                      .where(OutboundRecipient.message_id == message_id)).all()
    statuses = [s for s, _ in rows]
    if any(s in PENDING for s in statuses):
        return "sending" if any(a for _, a in rows) else "queued"
    if statuses and all(s == "delivered" for s in statuses):
        return "sent"
    if any(s == "delivered" for s in statuses):
        return "partially_delivered"
    return "bounced"


# --- bounces (RFC 3464) ---------------------------------------------------------------------
def _status_code(reply: str, action: str) -> str:
    match = _ENHANCED.match(reply.split(" ", 1)[1] if reply[:3].isdigit() else reply)
    if match:
        return ".".join(match.groups())
    if reply[:1] in "45":
        return f"{reply[:1]}.0.0"
    return "5.0.0" if action == "failed" else "4.0.0"


def _bounce(db: Session, settings: Settings, message: Message, row: OutboundQueue, recipients: list,
            *, action: str, now: dt.datetime) -> None:
    """A DSN from MAILER-DAEMON, with envelope sender <>, into the sending inbox. Never for mail
    that itself had the null sender (no bounce of a bounce)."""
    if not row.mail_from:
        return
    inbox = db.get(Inbox, message.inbox_id)
    if inbox is None or inbox.status == "deleted":
        return
    raw = build_dsn(settings, message, row, recipients, action=action, now=now,
                    original=_raw_of(db, row))
    inbound.receive(db, inbox_ids=[inbox.id], raw=raw, envelope_from="", envelope_to={inbox.id: inbox.address},
                    enforce_caps=False)  # a bounce is never refused for a full mailbox: it would be lost
    if action == "failed":
        usage.record(db, inbox.tenant_id, usage.BOUNCES, len(recipients), inbox_id=inbox.id, now=now)


def build_dsn(settings: Settings, message: Message, row: OutboundQueue, recipients: list, *, action: str,
              now: dt.datetime, original: bytes) -> bytes:
    host = settings.hostname
    boundary = f"=_gentbox_dsn_{secrets.token_hex(12)}"
    failed = action == "failed"
    subject = "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    human = [f"This is the mail system at {host}.", ""]
    if failed:
        human += ["Your message could not be delivered to the recipients below. This is permanent:",
                  "it will not be tried again."]
    else:
        human += [f"Your message has not been delivered yet to the recipients below, after "
                  f"{_age(now - row.created_at)}.",
                  f"It will be retried until {format_datetime(row.expires_at)}; you need not resend it."]
    human.append("")
    for rcpt in recipients:
        human.append(f"<{rcpt.recipient}>: {_one_line(rcpt.smtp_reply)}")
    status_fields = [f"Reporting-MTA: dns; {host}", f"X-Gentbox-Queue-ID: {row.id}",
                     f"Arrival-Date: {format_datetime(row.created_at)}", ""]
    for rcpt in recipients:
        status_fields += [f"Final-Recipient: rfc822; {rcpt.recipient}", f"Action: {action}",
                          f"Status: {_status_code(rcpt.smtp_reply, action)}"]
        if rcpt.remote_host and rcpt.remote_host != host:
            status_fields.append(f"Remote-MTA: dns; {rcpt.remote_host}")
        if rcpt.smtp_reply[:3].isdigit():
            status_fields.append(f"Diagnostic-Code: smtp; {_one_line(rcpt.smtp_reply)}")
        if rcpt.last_attempt_at:
            status_fields.append(f"Last-Attempt-Date: {format_datetime(rcpt.last_attempt_at)}")
        if not failed:
            status_fields.append(f"Will-Retry-Until: {format_datetime(row.expires_at)}")
        status_fields.append("")
    headers_part = original.split(b"\r\n\r\n", 1)[0]
    headers_part = re.sub(rb"^DKIM-Signature:.*?(?=\r\n[^ \t]|\Z)", b"", headers_part, flags=re.S | re.M).lstrip(b"\r\n")
    reference = message.message_id_header
    head = [f"From: Mail Delivery System <MAILER-DAEMON@{host}>", f"To: <{row.mail_from}>",
            f"Subject: {subject}", f"Date: {format_datetime(now)}",
            f"Message-ID: <{new_id('dsn').split('_', 1)[1].lower()}@{host}>", "Auto-Submitted: auto-replied",
            *([f"In-Reply-To: {reference}", f"References: {reference}"] if reference else []),
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"']
    parts = [
        "\r\n".join(head), "", "This is a MIME-encapsulated delivery status notification.", "",
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
        *human, "", f"--{boundary}", "Content-Type: message/delivery-status", "",
        *status_fields, f"--{boundary}", "Content-Type: text/rfc822-headers", "", ""]
    body = "\r\n".join(parts).encode("utf-8")
    return body + headers_part + f"\r\n\r\n--{boundary}--\r\n".encode()


def _one_line(value: str) -> str:
    return " ".join(value.split())[:900]


# --- what the API shows ---------------------------------------------------------------------
def delivery_of(db: Session, message_ids: list[str]) -> dict[str, list[dict]]:
    """Each outbound message's delivery[]: one entry per recipient, in the order they were named."""
    found: dict[str, list[dict]] = {m: [] for m in message_ids}
    if not message_ids:
        return found
    rows = db.execute(select(OutboundRecipient, OutboundQueue.next_attempt_at, OutboundQueue.status)
                      .join(OutboundQueue, OutboundQueue.id == OutboundRecipient.queue_id)
                      .where(OutboundRecipient.message_id.in_(message_ids))
                      .order_by(OutboundRecipient.position))
    for rcpt, next_at, queue_status in rows:
        pending = rcpt.status in PENDING
        found[rcpt.message_id].append({
            "recipient": rcpt.recipient, "status": rcpt.status, "attempts": rcpt.attempts,
            "last_attempt_at": rcpt.last_attempt_at, "next_attempt_at": next_at if pending else None,
            "smtp_reply": rcpt.smtp_reply or None})
    return found
