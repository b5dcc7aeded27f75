"""Inbound mail: who may receive, and storing a received message durably in one transaction.

The SMTP edge asks `check_recipient` at RCPT time (so no bounce is ever generated for a bad
address) and calls `receive` at the end of DATA; it answers 250 only after `receive`'s unit of
work has committed.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import idna
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import (Attachment, Domain, Inbox, Message, MessageRaw, MessageSearch, Thread,
                              User)
from appliance.services import events
from appliance.services.mime import ParsedMessage, parse_message

RESERVED = ("postmaster", "abuse")  # RFC 2142: delivered to the domain owner's inbox


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
    """The answer to RCPT TO: accepted with the inbox it lands in, or an SMTP reply to refuse."""

    inbox_id: str | None
    code: int = 250
    reply: str = "2.1.5 Recipient OK"

    @property
    def accepted(self) -> bool:
        return self.inbox_id is not None


def check_recipient(db: Session, address: str) -> RecipientDecision:
    """Which inbox receives mail for address, or why not (550 unknown, 554 relay, 450 paused)."""
    address = address.strip().lower()
    local, _, domain_name = address.rpartition("@")
    if not local or not domain_name:
        return RecipientDecision(None, 550, "5.1.3 Bad recipient address syntax")
    if "@" in local or "%" in local or "!" in local:  # routing onwards (quoted @, percent hack, bang path)
        return RecipientDecision(None, 554, "5.7.1 Relay access denied")
    try:  # an internationalised domain (SMTPUTF8) is stored, and so looked up, in punycode
        domain_name = idna.encode(domain_name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return RecipientDecision(None, 550, "5.1.3 Bad recipient address syntax")
    address = f"{local}@{domain_name}"
    domain = db.scalar(select(Domain).where(Domain.name == domain_name))
    if domain is None:
        return RecipientDecision(None, 554, "5.7.1 Relay access denied")
    inbox = db.scalar(select(Inbox).where(Inbox.address == address, Inbox.status != "deleted"))
    if inbox is None and local.split("+", 1)[0] in RESERVED:
        inbox = _owner_inbox(db, domain)
    if inbox is None or domain.status != "verified":
        return RecipientDecision(None, 550, "5.1.1 No such mailbox here")
    if inbox.status == "paused":
        return RecipientDecision(None, 450, "4.2.1 Mailbox temporarily unavailable; try again later")
    return RecipientDecision(inbox.id)


def _owner_inbox(db: Session, domain: Domain) -> Inbox | None:
    """postmaster@/abuse@ without an inbox of their own: the tenant's oldest active inbox on the
    domain, else anywhere in the tenant (the owner reads it)."""
    live = (Inbox.tenant_id == domain.tenant_id, Inbox.status == "active")
    return (db.scalars(select(Inbox).where(*live, Inbox.domain_id == domain.id).order_by(Inbox.id)).first()
            or db.scalars(select(Inbox).where(*live).order_by(Inbox.id)).first())


def owner_of(db: Session, tenant_id: str) -> User | None:
    return db.scalars(select(User).where(User.tenant_id == tenant_id, User.role == "owner")
                      .order_by(User.created_at)).first()


def _thread_for(db: Session, inbox: Inbox, parsed: ParsedMessage, now: dt.datetime) -> Thread:
    """The thread of the message this one answers (same inbox), or a new one."""
    wanted = [m for m in [parsed.in_reply_to, *reversed(parsed.references)] if m]
    if wanted:
        thread_id = db.scalar(select(Message.thread_id).where(Message.inbox_id == inbox.id,
                                                              Message.message_id_header.in_(wanted))
                              .order_by(Message.id.desc()).limit(1))
        if thread_id is not None:
            thread = db.get(Thread, thread_id)
            if thread is not None:
                return thread
    thread = Thread(id=new_id("thr"), tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                    subject=parsed.subject, message_count=0, created_at=now, last_message_at=now)
    db.add(thread)
    return thread


def search_document(parsed: ParsedMessage, envelope_from: str) -> str:
    addresses = [parsed.from_email, parsed.from_name, envelope_from,
                 *(a["email"] for a in parsed.to + parsed.cc)]
    return "\n".join([parsed.subject, " ".join(a for a in addresses if a), parsed.text[:100_000]])


def index_message(db: Session, message_id: str, inbox_id: str, document: str) -> None:
    """Make a message findable by `q` (SQLite FTS5, PostgreSQL full-text on message_search)."""
    db.execute(insert(MessageSearch).values(message_id=message_id, inbox_id=inbox_id, document=document))
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("INSERT INTO messages_fts (message_id, inbox_id, document) VALUES (:m, :i, :d)"),
                   {"m": message_id, "i": inbox_id, "d": document})


def unindex_message(db: Session, message_id: str) -> None:
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("DELETE FROM messages_fts WHERE message_id = :m"), {"m": message_id})


def _still_receiving(db: Session, inbox_id: str) -> Inbox:
    """The inbox as the writing transaction sees it; RecipientChanged when it stopped receiving."""
    inbox = db.get(Inbox, inbox_id)
    if inbox is None:
        raise RecipientChanged(inbox_id, "deleted")
    if inbox.status != "active":
        raise RecipientChanged(inbox_id, inbox.status)
    domain_status = db.scalar(select(Domain.status).where(Domain.id == inbox.domain_id))
    if domain_status != "verified":
        raise RecipientChanged(inbox_id, f"on a {domain_status or 'deleted'} domain")
    return inbox


def receive(db: Session, *, inbox_ids: list[str], raw: bytes, envelope_from: str,
            envelope_to: dict[str, str], client_ip: str = "", authentication: dict | None = None,
            trace_headers: bytes = b"") -> list[Message]:
    """Store one received message for each inbox, with its thread, attachments, search entry and
    `message.received` event, in the caller's unit of work. trace_headers (Received,
    Authentication-Results) are prepended to the stored copy; the rest is kept byte for byte."""
    parsed = parse_message(raw)
    stored_raw = trace_headers + raw
    now = utcnow()
    document = search_document(parsed, envelope_from)
    messages = []
    inboxes = [_still_receiving(db, inbox_id) for inbox_id in dict.fromkeys(inbox_ids)]  # one copy each
    for inbox in inboxes:
        inbox_id = inbox.id
        thread = _thread_for(db, inbox, parsed, now)
        message = Message(
            id=new_id("msg"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, thread_id=thread.id,
            direction="inbound", status="received", subject=parsed.subject, is_read=False, created_at=now,
            message_id_header=parsed.message_id, in_reply_to=parsed.in_reply_to, references=parsed.references,
            date_header=parsed.date, from_email=parsed.from_email, from_name=parsed.from_name,
            to_addrs=parsed.to, cc_addrs=parsed.cc, reply_to_addrs=parsed.reply_to, snippet=parsed.snippet,
            text_body=parsed.text, html_body=parsed.html, has_attachments=bool(parsed.attachments),
            size=len(stored_raw), labels=[], authentication=authentication or {},
            parse_error=parsed.parse_error, envelope_from=envelope_from[:320],
            envelope_to=envelope_to.get(inbox_id, inbox.address)[:320], client_ip=client_ip[:64],
            received_at=now)
        db.add(message)
        db.flush()
        db.add(MessageRaw(message_id=message.id, raw=stored_raw))
        for part in parsed.attachments:
            db.add(Attachment(id=new_id("att"), message_id=message.id, filename=part.filename,
                              content_type=part.content_type[:255], size=len(part.content),
                              disposition=part.disposition, content_id=part.content_id, content=part.content))
        db.execute(update(Thread).where(Thread.id == thread.id)
                   .values(message_count=Thread.message_count + 1, last_message_at=now))
        index_message(db, message.id, inbox.id, document)
        events.emit(db, "message.received", tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                    resource_id=message.id,
                    payload={"thread_id": thread.id, "from": parsed.from_email, "subject": parsed.subject[:200]})
        messages.append(message)
    return messages
