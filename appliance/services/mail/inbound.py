"""Inbound mail: who may receive, and storing a received message durably in one transaction.

The SMTP edge asks `check_recipient` at RCPT time (so no bounce is ever generated for a bad
address) and calls `receive` at the end of DATA; it answers 250 only after `receive`'s unit of
work has committed.
"""
from __future__ import annotations

import collections
import datetime as dt
import functools
from dataclasses import dataclass, field

import idna
from sqlalchemy import Connection, Row, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.ids import new_id
from appliance.models import Attachment, Domain, Inbox, Message, MessageRaw, MessageSearch, Thread, User
from appliance.services.automation import events
from appliance.services.governance import caps, usage
from appliance.services.mail import message_rows
from appliance.services.mail.mime import ParsedMessage, parse_message
from appliance.services.team import lists as distribution_lists
from appliance.services.workspace import blobs

RESERVED = ("postmaster", "abuse")  # RFC 2142: delivered to the domain owner's inbox
MailboxFull = caps.MailboxFull  # a mailbox at its enforced cap (issue 22): the edge answers 452 4.2.2


class RecipientChanged(Exception):
    """An inbox accepted at RCPT time was paused or deleted (or its domain unverified) before the
    end of DATA. Nothing is stored: the client hears a temporary failure and retries, and its
    next RCPT gets the inbox's current answer (450 paused, 550 gone); the other recipients are
    accepted again then, so no copy is lost or stored twice."""

    def __init__(self, inbox_id: str, status: str) -> None:
        super().__init__(f"inbox {inbox_id} is {status} now")
        self.inbox_id, self.status = inbox_id, status


@dataclass(frozen=True)
class RecipientDecision:
    """The answer to RCPT TO: accepted with the inbox it lands in (or the distribution list whose
    members it lands in), or an SMTP reply to refuse."""

    inbox_id: str | None
    code: int = 250
    reply: str = "2.1.5 Recipient OK"
    list_id: str | None = None
    tenant_id: str | None = None  # the accepted inbox's tenant (the listener checks its mailbox cap)

    @property
    def accepted(self) -> bool:
        return self.inbox_id is not None or self.list_id is not None


def check_recipient(db: Session | Connection, address: str) -> RecipientDecision:
    """Which inbox receives mail for address, or why not (550 unknown, 554 relay, 450 paused).
    Core statements only: a plain connection will do (the listener asks on every RCPT)."""
    address = address.strip().lower()
    local, _, domain_name = address.rpartition("@")
    if not local or not domain_name:
        return RecipientDecision(None, 550, "5.1.3 Bad recipient address syntax")
    if "@" in local or "%" in local or "!" in local:  # routing onwards (quoted @, percent hack, bang path)
        return RecipientDecision(None, 554, "5.7.1 Relay access denied")
    domain_name = _ascii_domain(domain_name)
    if domain_name is None:
        return RecipientDecision(None, 550, "5.1.3 Bad recipient address syntax")
    # One statement for the domain and the live inbox at the address (every RCPT asks this).
    row = db.execute(_RECIPIENT, {"domain": domain_name, "address": f"{local}@{domain_name}"}).first()
    if row is None:
        return RecipientDecision(None, 554, "5.7.1 Relay access denied")
    domain_id, tenant_id, domain_status, inbox_id, inbox_status = row
    if inbox_id is None and domain_status == "verified":  # only on a miss: mail to inboxes pays nothing
        found = distribution_lists.find_for_recipient(db, f"{local}@{domain_name}")
        if found is not None:
            list_id, active, paused = found
            if active:
                return RecipientDecision(None, list_id=list_id)
            if paused:  # as a paused inbox does: the sender retries later
                return RecipientDecision(None, 450, "4.2.1 Every member of this list is paused; try again later")
            return RecipientDecision(None, 550, "5.1.1 This list has no members")  # never accept and drop
    if inbox_id is None and local.split("+", 1)[0] in RESERVED:
        owner = _owner_inbox(db, tenant_id, domain_id)
        inbox_id, inbox_status = (owner.id, owner.status) if owner is not None else (None, None)
    if inbox_id is None or domain_status != "verified":
        return RecipientDecision(None, 550, "5.1.1 No such mailbox here")
    if inbox_status == "paused":
        return RecipientDecision(None, 450, "4.2.1 Mailbox temporarily unavailable; try again later")
    return RecipientDecision(inbox_id, tenant_id=tenant_id)


# Several tenants may claim a name (domains.py): the verified holder's row first, and only its inboxes.
_RECIPIENT = (select(Domain.id, Domain.tenant_id, Domain.status, Inbox.id, Inbox.status)
              .outerjoin(Inbox, and_(Inbox.address == bindparam("address"), Inbox.status != "deleted",
                                     Inbox.domain_id == Domain.id))
              .where(Domain.name == bindparam("domain")).order_by(Domain.status != "verified").limit(1))


@functools.lru_cache(maxsize=4096)
def _ascii_domain(name: str) -> str | None:
    """An internationalised domain (SMTPUTF8) in punycode, as it is stored; None if it is no name."""
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def _owner_inbox(db: Session | Connection, tenant_id: str, domain_id: str) -> Row | None:
    """postmaster@/abuse@ without an inbox of their own: the tenant's oldest active inbox on the
    domain, else anywhere in the tenant (the owner reads it); its id and status."""
    live = select(Inbox.id, Inbox.status).where(Inbox.tenant_id == tenant_id, Inbox.status == "active")
    return (db.execute(live.where(Inbox.domain_id == domain_id).order_by(Inbox.id).limit(1)).first()
            or db.execute(live.order_by(Inbox.id).limit(1)).first())


def owner_of(db: Session, tenant_id: str) -> User | None:
    return db.scalars(select(User).where(User.tenant_id == tenant_id, User.role == "owner")
                      .order_by(User.created_at)).first()


BODY_INDEXED = 100_000  # characters of the text that `q` searches (migration 0008's view: the same)


def search_head(parsed: ParsedMessage, envelope_from: str) -> str:
    """What `q` searches besides the text: the subject line, then the addresses line."""
    addresses = [parsed.from_email, parsed.from_name, envelope_from,
                 *(a["email"] for a in parsed.to + parsed.cc)]
    return f"{parsed.subject}\n{' '.join(a for a in addresses if a)}"


def search_document(dialect: str, head: str, text: str) -> str:
    """message_search.document. PostgreSQL indexes it whole: the head, then the text. On SQLite it
    is the head alone: the FTS5 index reads the text from messages.text_body (migration 0008), so
    the text is not written a second time."""
    return head if dialect == "sqlite" else f"{head}\n{text[:BODY_INDEXED]}"


def index_message(db: Session, message_id: str, inbox_id: str, head: str, text: str) -> None:
    """Make a stored message findable by `q`: its message_search row (PostgreSQL: a tsvector behind
    a GIN index; SQLite: triggers index it in messages_fts, migration 0008)."""
    document = search_document(db.get_bind().dialect.name, head, text)
    db.execute(_INSERT_SEARCH, {"message_id": message_id, "inbox_id": inbox_id, "document": document})


_INSERT_SEARCH = insert(MessageSearch.__table__)  # built once, Core: the message is stored before (no flush)


def fts_key(row_id: str) -> str:
    """An id as one FTS5 token (the tokenizer would split it at the underscore); migration 0008's
    view makes the inbox's token the same way."""
    return row_id.replace("_", "")


# --- storing ----------------------------------------------------------------------------------
# The write path is plain Core statements, several messages' rows at a time (executemany): the
# listener's committer stores every message waiting for it in one transaction, and on SQLite that
# transaction holds the database's single write lock, so as little as possible happens inside it.
# Parsing happens before, in `prepare`.

@dataclass(frozen=True)
class StoredMessage:
    """One stored copy: the message in one inbox."""

    id: str
    inbox_id: str
    thread_id: str


@dataclass(frozen=True)
class Incoming:
    """A received message, parsed, waiting to be stored for its inboxes (one copy each)."""

    inbox_ids: tuple[str, ...]
    raw: bytes  # the stored copy: trace headers, then the bytes as received
    parsed: ParsedMessage
    search_head: str  # what `q` searches besides the text
    envelope_from: str
    envelope_to: dict[str, str]  # inbox id -> the RCPT address that reached it
    client_ip: str
    authentication: dict
    labels: tuple[str, ...] = ()  # what each stored copy starts with ("suspicious": quarantined)
    # Distribution lists reached (list id -> its address): one copy per member inbox, expanded
    # in the writing transaction; lists the message already went through (its List-Id) are left out.
    lists: dict[str, str] = field(default_factory=dict)
    looped: tuple[str, ...] = ()  # list addresses left out because the message carries their List-Id
    # What its storing announces: mail imported from another server (mail/imports.py) is not news,
    # so automatic replies, workflows and alerts on message.received never see it.
    event_type: str = "message.received"

    @property
    def looped_only(self) -> bool:
        """Every recipient was a list the message already went through: a loop, nothing to store."""
        return bool(self.looped) and not self.inbox_ids and not self.lists


def prepare(*, inbox_ids: list[str], raw: bytes, envelope_from: str, envelope_to: dict[str, str],
            client_ip: str = "", authentication: dict | None = None, trace_headers: bytes = b"",
            labels: tuple[str, ...] = (), lists: dict[str, str] | None = None) -> Incoming:
    """Parse a received message for `store`: the work that needs no database. trace_headers
    (Received, Authentication-Results) go on top of the stored copy; the rest is kept byte for byte.
    lists: the distribution lists reached (id -> address); one the message went through already is
    left out (a loop) and named in `looped`."""
    parsed = parse_message(raw)
    lists = dict(lists or {})
    looped = {i: a for i, a in lists.items() if distribution_lists.carries_list_id(raw, a)}
    return Incoming(inbox_ids=tuple(dict.fromkeys(inbox_ids)), raw=trace_headers + raw, parsed=parsed,
                    search_head=search_head(parsed, envelope_from), envelope_from=envelope_from,
                    envelope_to=dict(envelope_to), client_ip=client_ip, authentication=authentication or {},
                    labels=tuple(labels), lists={i: a for i, a in lists.items() if i not in looped},
                    looped=tuple(looped.values()))


def receive(db: Session, *, inbox_ids: list[str], raw: bytes, envelope_from: str,
            envelope_to: dict[str, str], client_ip: str = "", authentication: dict | None = None,
            trace_headers: bytes = b"", lists: dict[str, str] | None = None, settings: Settings | None = None,
            enforce_caps: bool = True) -> list[StoredMessage]:
    """Store one received message for each inbox, with its thread, attachments, search entry and
    `message.received` event, in the caller's unit of work. trace_headers (Received,
    Authentication-Results) are prepended to the stored copy; the rest is kept byte for byte.
    RecipientChanged (and nothing written) when an inbox stopped receiving."""
    incoming = prepare(inbox_ids=inbox_ids, raw=raw, envelope_from=envelope_from, envelope_to=envelope_to,
                       client_ip=client_ip, authentication=authentication, trace_headers=trace_headers,
                       lists=lists)
    [outcome] = store(db, [incoming], settings=settings, enforce_caps=enforce_caps)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def store(db: Session, batch: list[Incoming], *, settings: Settings | None = None,
          enforce_caps: bool = True) -> list[list[StoredMessage] | Exception]:
    """Store several received messages in the caller's transaction, each message all or nothing.
    For each, in order: its stored copies, or the exception that kept it out (RecipientChanged when
    an inbox stopped receiving; in a batch of several, a database error that this message met in
    its own savepoint; MailboxFull when an inbox's enforced mailbox cap would be passed). Anything
    else propagates, and the caller's transaction is lost whole. settings: the operator's default
    caps and the owner's notices (None: the tenants' own caps only)."""
    now = utcnow()
    members = distribution_lists.member_inboxes(db, [i for incoming in batch for i in incoming.lists])
    inboxes = _receiving(db, [i for incoming in batch for i in incoming.inbox_ids]
                         + [i for found in members.values() for i in found])
    rows, pending = _Rows(now), {}
    # One read per batch (PostgreSQL: the caps locked, then their gauges); None (nothing more to
    # do per message) when no mailbox cap concerns the batch's inboxes.
    quota = (caps.mailbox_quota(db, settings, {i.tenant_id for i in inboxes.values()}, set(inboxes))
             if enforce_caps else None)
    outcomes: list[list[StoredMessage] | Exception] = []
    for incoming in batch:
        try:
            outcomes.append(_plan(db, incoming, inboxes, now, rows, pending, members, quota))
        except (RecipientChanged, MailboxFull) as exc:
            outcomes.append(exc)
    if len(batch) == 1 or not rows.messages:
        rows.write(db)
        return outcomes
    try:
        with db.begin_nested():  # all at once; should one message fail, one at a time below
            rows.write(db)
        return outcomes
    except Exception:  # noqa: BLE001 - found out below, one message at a time
        pass
    if quota is not None:
        quota.used.clear()  # the batch's counts went with it: read the gauges again, count each once
    for index, incoming in enumerate(batch):
        if isinstance(outcomes[index], Exception):
            continue
        one = _Rows(now)
        try:
            with db.begin_nested():
                outcomes[index] = _plan(db, incoming, inboxes, now, one, {}, members, quota)
                one.write(db)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is this message's alone
            outcomes[index] = exc
    return outcomes


@dataclass(frozen=True)
class _Inbox:
    tenant_id: str
    address: str
    status: str
    domain_status: str | None


def _receiving(db: Session, inbox_ids: list[str]) -> dict[str, _Inbox]:
    """The inboxes as the writing transaction sees them, with their domain's status."""
    found = db.connection().execute(_RECEIVING, {"ids": sorted(set(inbox_ids))})  # Core: no ORM layer
    return {row[0]: _Inbox(*row[1:]) for row in found}


_RECEIVING = (select(Inbox.id, Inbox.tenant_id, Inbox.address, Inbox.status, Domain.status)
              .outerjoin(Domain, Domain.id == Inbox.domain_id)
              .where(Inbox.id.in_(bindparam("ids", expanding=True))))


def _still_receiving(inboxes: dict[str, _Inbox], inbox_id: str) -> _Inbox:
    inbox = inboxes.get(inbox_id)
    if inbox is None:
        raise RecipientChanged(inbox_id, "deleted")
    if inbox.status != "active":
        raise RecipientChanged(inbox_id, inbox.status)
    if inbox.domain_status != "verified":
        raise RecipientChanged(inbox_id, f"on a {inbox.domain_status or 'deleted'} domain")
    return inbox


class _Rows:
    """The rows of one or more messages, written table by table (one executemany each)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.threads: dict[str, dict] = {}  # new threads by id
        self.bumps: collections.Counter[str] = collections.Counter()  # existing threads: new messages
        self.messages: list[dict] = []
        self.raws: list[dict] = []
        self.attachments: list[dict] = []
        self.attachment_owners: list[tuple[str, str]] = []  # (tenant, inbox) per attachments row
        self.search: list[dict] = []
        self.events: list[dict] = []
        self.usage: list[tuple[str, str, str, int]] = []  # (tenant, inbox, metric, amount): one upsert batch

    def write(self, db: Session) -> None:
        conn = db.connection()
        blobs.store_attachments(db, self.attachments, self.attachment_owners)  # issue 19: bytes as blobs
        for statement, rows in zip(_INSERTS, (list(self.threads.values()), self.messages, self.raws,
                                              self.attachments, self.search)):
            if rows:
                conn.execute(statement, rows)
        # One multi-row insert at commit; by SMTP, or by whoever delivers locally (the worker).
        events.emit_many(db, self.events, actor=events.context_actor() or events.SMTP)
        if self.bumps:
            conn.execute(_THREAD_BUMP, [{"tid": tid, "n": n, "now": self.now}
                                        for tid, n in self.bumps.items()])
        usage.record_many(db, self.usage, now=self.now)  # metering: one executemany per group commit


# Built once: each is compiled once, and its cache key, memoised on the statement, made once.
_INSERTS = tuple(insert(model.__table__) for model in (Thread, Message, MessageRaw, Attachment, MessageSearch))
_THREAD_BUMP = (update(Thread.__table__).where(Thread.__table__.c.id == bindparam("tid"))
                .values(message_count=Thread.__table__.c.message_count + bindparam("n"),
                        last_message_at=bindparam("now", type_=Thread.__table__.c.last_message_at.type)))


def _plan(db: Session, incoming: Incoming, inboxes: dict[str, _Inbox], now: dt.datetime, rows: _Rows,
          pending: dict[tuple[str, str], str], members: dict[str, list[str]],
          quota: caps.MailboxQuota | None = None) -> list[StoredMessage]:
    """Add one message's rows (one copy per inbox) to rows; RecipientChanged (or MailboxFull) before
    adding any when an inbox stopped receiving (or is full). pending: thread ids of messages
    planned but not yet written."""
    checked = [(inbox_id, _still_receiving(inboxes, inbox_id)) for inbox_id in incoming.inbox_ids]
    listed = _list_copies(db, incoming, inboxes, members, {inbox_id for inbox_id, _inbox in checked})
    if quota is not None:
        quota.admit([(inbox.tenant_id, inbox_id) for inbox_id, inbox in checked + listed], len(incoming.raw), now)
    parsed = incoming.parsed
    dialect = db.get_bind().dialect.name
    stored = []
    for inbox_id, inbox in checked + listed:
        message_id = new_id("msg")
        thread_id = _thread_for(db, inbox_id, parsed, pending)
        if thread_id is None:
            thread_id = new_id("thr")
            rows.threads[thread_id] = message_rows.thread_row(thread_id=thread_id, tenant_id=inbox.tenant_id,
                                                              inbox_id=inbox_id, subject=parsed.subject, now=now)
        rows.bumps[thread_id] += 1
        if parsed.message_id:
            pending[(inbox_id, parsed.message_id)] = thread_id
        via = incoming.envelope_to.get(inbox_id)
        raw = incoming.raw if via not in incoming.lists.values() else (
            f"List-Id: {distribution_lists.list_id_header(via)}\r\n".encode("ascii") + incoming.raw)
        rows.messages.append(_message_row(incoming, message_id, inbox_id, inbox, thread_id, now))
        rows.raws.append({"message_id": message_id, "raw": raw})
        attachments = message_rows.attachment_rows(parsed, message_id)
        rows.attachments.extend(attachments)
        rows.attachment_owners.extend([(inbox.tenant_id, inbox_id)] * len(attachments))
        rows.search.append({"message_id": message_id, "inbox_id": inbox_id,
                            "document": search_document(dialect, incoming.search_head, parsed.text)})
        rows.events.append({"type": incoming.event_type, "tenant_id": inbox.tenant_id, "inbox_id": inbox_id,
                            "resource_id": message_id, "occurred_at": now,
                            "payload": {"thread_id": thread_id, "from": parsed.from_email,
                                        "subject": parsed.subject[:200]}})
        rows.usage += [(inbox.tenant_id, inbox_id, usage.RECEIVED, 1),
                       (inbox.tenant_id, inbox_id, usage.MAILBOX_BYTES, len(incoming.raw))]
        stored.append(StoredMessage(message_id, inbox_id, thread_id))
    return stored


def _list_copies(db: Session, incoming: Incoming, inboxes: dict[str, _Inbox], members: dict[str, list[str]],
                 seen: set[str]) -> list[tuple[str, _Inbox]]:
    """The member inboxes a message reaches through its lists: each once (an inbox named directly
    too gets its direct copy only), only the live ones, and none already holding this Message-ID
    from that list (a resend, or a loop through an outside forwarder). Sets envelope_to of each."""
    copies = []
    for list_id, address in incoming.lists.items():
        wanted = [i for i in members.get(list_id, []) if i not in seen and _receives(inboxes.get(i))]
        delivered = distribution_lists.already_delivered(db, wanted, incoming.parsed.message_id, address)
        wanted = [i for i in wanted if i not in delivered]
        for inbox_id in wanted:
            seen.add(inbox_id)
            incoming.envelope_to[inbox_id] = address
            copies.append((inbox_id, inboxes[inbox_id]))
    return copies


def _receives(inbox: _Inbox | None) -> bool:
    return inbox is not None and inbox.status == "active" and inbox.domain_status == "verified"


def thread_of(db: Session, inbox_id: str, parsed: ParsedMessage) -> str | None:
    """The stored thread of the message this one answers in this inbox (None: a new thread)."""
    return _thread_for(db, inbox_id, parsed, {})


def _thread_for(db: Session, inbox_id: str, parsed: ParsedMessage, pending: dict[tuple[str, str], str]) -> str | None:
    """The thread of the message this one answers (same inbox), or None for a new one."""
    wanted = [m for m in [parsed.in_reply_to, *reversed(parsed.references)] if m]
    if not wanted:
        return None
    # A message planned in this batch is newer than any stored one: it wins, as the newest would.
    planned = [pending[(inbox_id, m)] for m in wanted if (inbox_id, m) in pending]
    if planned:
        return planned[0]
    return db.scalar(select(Message.thread_id).join(Thread, Thread.id == Message.thread_id)
                     .where(Message.inbox_id == inbox_id, Message.message_id_header.in_(wanted))
                     .order_by(Message.id.desc()).limit(1))


def _message_row(incoming: Incoming, message_id: str, inbox_id: str, inbox: _Inbox, thread_id: str,
                 now: dt.datetime) -> dict:
    return message_rows.message_row(
        incoming.parsed, message_id=message_id, tenant_id=inbox.tenant_id, inbox_id=inbox_id, thread_id=thread_id,
        direction="inbound", status="received", size=len(incoming.raw), now=now, is_read=False,
        labels=incoming.labels, authentication=incoming.authentication, envelope_from=incoming.envelope_from,
        envelope_to=incoming.envelope_to.get(inbox_id, inbox.address), client_ip=incoming.client_ip,
        received_at=now)
