"""The outbound queue as people see it (issue 6, the queue page): deferred and failed rows with
their last SMTP reply, attempts and next attempt; retry now; cancel.

Operators see the whole box's queue (the appliance's own mail too); tenant owners and admins
only their tenant's. Retry and cancel are conditional UPDATEs on a row still waiting
(queued/deferred), so they never race the worker: a row it has claimed (delivering) or
finished is refused with 409 and left as it is. A cancelled row's pending recipients become
`failed` with a reply that says who cancelled, the message's status is worked out again from
all its recipients, and `message.bounced` tells the agent (with `cancelled: true`): nothing
claims a delivery that did not happen, and the worker never picks the row up again.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, exists, select, true, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.models import Inbox, Message, OutboundQueue, OutboundRecipient, SystemMail
from appliance.services.automation import events
from appliance.services.identity.auth import Principal, require_manager
from appliance.services.mail import outbound

VIEWS = ("waiting", "failed")
WAITING = ("queued", "deferred", "delivering")
GAVE_UP = ("bounced", "failed")


@dataclass
class QueueEntry:
    """One queue row (one message to one recipient domain) and what the page shows of it."""

    row: OutboundQueue
    recipients: list[OutboundRecipient] = field(default_factory=list)
    sender: str = ""  # the sending inbox, or "system" for the appliance's own mail
    subject: str | None = None  # None for another tenant's mail (an operator sees its envelope only)


def _scope(principal: Principal):  # noqa: ANN202 - a SQL condition
    if principal.kind == "user" and principal.user.is_operator:
        return true()
    require_manager(principal)
    return OutboundQueue.tenant_id == principal.tenant_id


def list_queue(db: Session, principal: Principal, *, view: str = "waiting", limit: int = 100) -> list[QueueEntry]:
    """Waiting rows (queued, deferred, being delivered) soonest first, or finished rows with a
    recipient that was not delivered, most recent first."""
    if view not in VIEWS:
        raise ValidationError(f"view must be one of {', '.join(VIEWS)}", field="view")
    query = select(OutboundQueue).where(_scope(principal))
    if view == "waiting":
        query = query.where(OutboundQueue.status.in_(WAITING)).order_by(OutboundQueue.next_attempt_at,
                                                                         OutboundQueue.id)
    else:
        gave_up = exists().where(OutboundRecipient.queue_id == OutboundQueue.id,
                                 OutboundRecipient.status.in_(GAVE_UP))
        query = query.where(OutboundQueue.status == "done", gave_up).order_by(
            OutboundQueue.finished_at.desc(), OutboundQueue.id.desc())
    rows = list(db.scalars(query.limit(limit)))
    return _entries(db, principal, rows)


def _entries(db: Session, principal: Principal, rows: list[OutboundQueue]) -> list[QueueEntry]:
    entries = {r.id: QueueEntry(r) for r in rows}
    if not rows:
        return []
    for rcpt in db.scalars(select(OutboundRecipient).where(OutboundRecipient.queue_id.in_(list(entries)))
                           .order_by(OutboundRecipient.position)):
        entries[rcpt.queue_id].recipients.append(rcpt)
    inbox_ids = {r.inbox_id for r in rows if r.inbox_id}
    addresses = {i: a for i, a in db.execute(select(Inbox.id, Inbox.address).where(Inbox.id.in_(inbox_ids)))}
    own = [r.message_id for r in rows if r.message_id and r.tenant_id == principal.tenant_id]
    subjects = {i: s for i, s in db.execute(select(Message.id, Message.subject).where(Message.id.in_(own)))}
    for entry in entries.values():
        row = entry.row
        entry.sender = addresses.get(row.inbox_id, "") if row.inbox_id else "system"
        if row.system_mail_id:
            entry.subject = "(the appliance's own mail)"
        elif row.message_id in subjects:
            entry.subject = subjects[row.message_id]
    return list(entries.values())


def get_row(db: Session, principal: Principal, queue_id: str) -> OutboundQueue:
    """A queue row the caller may see; 404 for any other."""
    row = db.scalar(select(OutboundQueue).where(OutboundQueue.id == queue_id, _scope(principal)))
    if row is None:
        raise NotFoundError("No such queued message.", fix="Reload the queue page: it may have been delivered.")
    return row


def _still_waiting(db: Session, row: OutboundQueue, values: dict) -> None:
    """Change a row only while it waits; 409 when the worker holds it or it is finished."""
    changed = db.execute(update(OutboundQueue).where(OutboundQueue.id == row.id,
                                                     OutboundQueue.status.in_(outbound.PENDING))
                         .values(**values).execution_options(synchronize_session=False)).rowcount
    db.refresh(row)
    if changed != 1:
        if row.status == "delivering":
            raise ConflictError("The worker is delivering this message right now.",
                                fix="Wait a moment and reload: it is delivered, deferred again or bounced.")
        raise ConflictError("This message has already left the queue.", code="conflict")


def retry_now(db: Session, principal: Principal, queue_id: str, now: dt.datetime | None = None) -> OutboundQueue:
    """Make a waiting row due at once: the worker's next pass tries it."""
    row = get_row(db, principal, queue_id)
    _still_waiting(db, row, {"next_attempt_at": now or utcnow()})
    return row


def cancel(db: Session, principal: Principal, queue_id: str, now: dt.datetime | None = None) -> OutboundQueue:
    """Give up a waiting row: its pending recipients fail (never delivered, no bounce mail)."""
    now = now or utcnow()
    row = get_row(db, principal, queue_id)
    reply = f"Cancelled by {principal.user.email if principal.user else principal.id} before delivery"
    _still_waiting(db, row, {"status": "done", "finished_at": now, "last_reply": reply,
                             "lease_until": None, "lease_owner": ""})
    cancelled = list(db.scalars(select(OutboundRecipient).where(
        and_(OutboundRecipient.queue_id == row.id, OutboundRecipient.status.in_(outbound.PENDING)))))
    for rcpt in cancelled:
        rcpt.status, rcpt.smtp_reply = "failed", reply
    db.flush()
    if row.message_id:
        message = db.get(Message, row.message_id)
        if message is not None:
            message.status = outbound.message_status(db, message.id)
            events.emit(db, "message.bounced", tenant_id=message.tenant_id, inbox_id=message.inbox_id,
                        resource_id=message.id, actor=principal.id,
                        payload={"recipients": [r.recipient for r in cancelled], "smtp_reply": reply,
                                 "attempts": row.attempts, "cancelled": True})
    elif row.system_mail_id:
        mail = db.get(SystemMail, row.system_mail_id)
        if mail is not None:  # it holds a one-time sign-up link: keep no copy of an undelivered one
            mail.status, mail.sent_at, mail.raw = "failed", now, b""
            mail.meta = {**(mail.meta or {}), "smtp_reply": reply}
    return row
