"""Automatic replies done right (RFC 3834), once for every area that answers mail by itself: the
out-of-office (issue 27) and workflow replies (they call the same two functions).

- `why_not(...)`/`should_auto_reply(...)`: never answer a null sender, automated mail
  (`Auto-Submitted` other than `no`), bulk, list or junk mail (`Precedence`, `List-Id`,
  `List-Unsubscribe`), mail that asks not to be answered (`X-Auto-Response-Suppress`), mailer
  daemons and list robots, or the appliance's own addresses (its inboxes, its system mail):
  that is how mail loops between two responders are avoided.
- `claim_window(...)`: at most one reply per (inbox, sender, purpose) per window (7 days by
  default), as an atomic upsert on a unique key, so two workers never both answer.

A reply itself carries `Auto-Submitted: auto-replied` and `In-Reply-To`/`References` (the send
path's reply threading), goes to the envelope sender (RFC 3834 3.1.5) and is sent through the
one send path (caps, approvals, DKIM).
"""
from __future__ import annotations

import datetime as dt
from email import policy
from email.message import Message as MailMessage
from email.parser import BytesHeaderParser
from email.utils import parseaddr

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.ids import new_id
from appliance.models import AutoReplyWindow, Inbox
from appliance.services.mail import mime

WINDOW = dt.timedelta(days=7)
AUTO_SUBMITTED = "auto-replied"  # what our replies carry
_ROBOTS = {"mailer-daemon", "postmaster", "listserv", "majordomo", "noreply", "no-reply", "donotreply",
           "do-not-reply", "bounce", "bounces"}
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def headers_of(raw: bytes) -> MailMessage:
    """The header fields of a stored message (the body is not read)."""
    return BytesHeaderParser(policy=policy.compat32).parsebytes(raw, headersonly=True)


def sender_of(envelope_from: str) -> str:
    """The address a reply goes to: the envelope sender, lower case ('' for the null sender)."""
    return parseaddr(envelope_from or "")[1].strip().lower().strip("<>")


def own_address(db: Session, address: str, hostname: str) -> bool:
    """Is address one of the appliance's own: an inbox here (any tenant) or its system mail?"""
    domain = address.rpartition("@")[2]
    if domain == hostname.lower() or domain.endswith(f".{hostname.lower()}"):
        return True
    return db.scalar(select(Inbox.id).where(Inbox.address == address, Inbox.status != "deleted").limit(1)) is not None


def why_not(db: Session, headers: MailMessage, envelope_from: str, *, hostname: str) -> str | None:
    """Why this message must not be answered automatically (RFC 3834 section 2), or None."""
    sender = sender_of(envelope_from)
    if not sender or "@" not in sender:
        return "null sender"
    automated = mime.automated_reason(headers)
    if automated:
        return automated
    suppress = {v.strip().lower() for v in (headers.get("X-Auto-Response-Suppress") or "").split(",")}
    if suppress & {"all", "oof", "autoreply"}:
        return "X-Auto-Response-Suppress"
    local = sender.split("@", 1)[0]
    if local in _ROBOTS or local.startswith("owner-") or local.endswith("-request") or local.endswith("-bounces"):
        return "a mail robot"
    if own_address(db, sender, hostname):
        return "the appliance's own address"
    return None


def should_auto_reply(db: Session, headers: MailMessage, envelope_from: str, *, hostname: str) -> bool:
    """May this message be answered automatically? (why_not says why not.)"""
    return why_not(db, headers, envelope_from, hostname=hostname) is None


def claim_window(db: Session, *, tenant_id: str, inbox_id: str, sender: str, purpose: str, now: dt.datetime,
                 window: dt.timedelta = WINDOW) -> bool:
    """Take the right to answer sender now: True (and recorded) unless the inbox answered them for
    this purpose within window. Atomic: of two concurrent claims only one wins."""
    table = AutoReplyWindow.__table__
    insert = _INSERT[db.get_bind().dialect.name](table).values(
        id=new_id("arw"), tenant_id=tenant_id, inbox_id=inbox_id, sender=sender.lower(), purpose=purpose,
        last_sent_at=now)
    upsert = insert.on_conflict_do_update(index_elements=["inbox_id", "sender", "purpose"],
                                          set_={"last_sent_at": now},
                                          where=table.c.last_sent_at <= now - window).returning(table.c.id)
    return db.execute(upsert).first() is not None
