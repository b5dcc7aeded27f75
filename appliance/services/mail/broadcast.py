"""Broadcast (issue 16 point 2, contract section 9): one message per contact of a label, each through
the one send path (outbound.send: DKIM, signatures, caps per recipient, auto-contacts), each with an
RFC 8058 one-click unsubscribe link signed for its inbox and address. Unsubscribed and hard-bounced
addresses are skipped and reported. A held token files ONE approval for the whole broadcast.
Broadcast queue rows carry priority 1, so the worker claims any due reply before them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from appliance import security
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import (Broadcast, BroadcastRecipient, Contact, ContactEmail, Inbox, OutboundQueue,
                              OutboundRecipient, Unsubscribe)
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import approvals
from appliance.services.identity.auth import Principal
from appliance.services.mail import compose, labels, outbound
from appliance.services.team import templates

_PURPOSE = "unsubscribe"
BROADCAST_PRIORITY = 1
_NOT_FOUND = "No such broadcast."


@dataclass
class BroadcastInput:
    """What POST /v1/messages/broadcast/ asked for, after schema validation."""

    label_id: str
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    template_id: str | None = None
    template_values: dict[str, Any] = field(default_factory=dict)


# --- unsubscribe links ----------------------------------------------------------------------
def unsubscribe_token(settings: Settings, inbox_id: str, address: str) -> str:
    """The signed per-recipient value of a one-click link: names the inbox and the address."""
    return security.sign_value(settings.secret_key, _PURPOSE, f"{inbox_id} {address.lower()}")


def unsubscribe_url(settings: Settings, inbox_id: str, address: str) -> str:
    return f"{settings.base_url}/u/{unsubscribe_token(settings, inbox_id, address)}"


def check_token(db: Session, settings: Settings, token: str) -> tuple[Inbox, str]:
    """The inbox and address a link names; 404 (saying nothing more) for any other token."""
    value = security.open_signed(settings.secret_key, _PURPOSE, token)
    inbox_id, _, address = (value or "").partition(" ")
    inbox = db.get(Inbox, inbox_id) if inbox_id and address else None
    if inbox is None:
        raise NotFoundError("No such unsubscribe link.")
    return inbox, address


def unsubscribe(db: Session, settings: Settings, token: str) -> str:
    """POST /u/<token>: record the address as unsubscribed from that inbox (idempotent)."""
    inbox, address = check_token(db, settings, token)
    if not db.scalar(select(Unsubscribe.id).where(Unsubscribe.inbox_id == inbox.id, Unsubscribe.address == address)):
        db.add(Unsubscribe(id=new_id("uns"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, address=address,
                           created_at=utcnow()))
    return address


# --- starting -------------------------------------------------------------------------------
def start(db: Session, settings: Settings, principal: Principal, inbox: Inbox, data: BroadcastInput) -> Broadcast:
    """Create the broadcast and send it, or hold it as one approval when the token's sends are held."""
    label = labels.get_label(db, inbox, data.label_id)
    if label.type == "message":
        raise ValidationError("A broadcast goes to contacts: the label must be of type contact or any.",
                              field="label_id", fix="Pick a contact label (GET /v1/labels/?type=contact).")
    if data.template_id is not None:
        templates.get_template(db, principal, data.template_id, field="template_id")
    elif not (data.text_body or data.html_body) or not data.subject:
        raise ValidationError("A broadcast needs a subject and text_body or html_body, or a template_id.",
                              field="subject" if not data.subject else "text_body",
                              fix="Send subject and text_body, or template_id with template_values.")
    now = utcnow()
    broadcast = Broadcast(id=new_id("bct"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, label_id=label.id,
                          status="queued", request=_request_of(data), recipients=0, skipped=0,
                          token_id=principal.token.id if principal.is_agent else None, created_at=now)
    db.add(broadcast)
    db.flush()
    if approvals.required(principal, "email:send"):
        broadcast.status = "held"
        approvals.request_approval(db, settings, principal, inbox, "broadcast", resource_id=broadcast.id,
                                   summary={"broadcast_id": broadcast.id, "label": label.name,
                                            "subject": (data.subject or "")[:300],
                                            "contacts": len(_targets(db, inbox, label.name))},
                                   payload={"broadcast_id": broadcast.id}, now=now)
        return broadcast
    _run(db, settings, principal, inbox, broadcast, label.name)
    return broadcast


def _request_of(data: BroadcastInput) -> dict:
    return {"subject": data.subject, "text_body": data.text_body, "html_body": data.html_body,
            "template_id": data.template_id, "template_values": dict(data.template_values or {})}


def _targets(db: Session, inbox: Inbox, label_name: str) -> list[tuple[Contact, str | None]]:
    """Each contact with the label, with its first address (None when it has none)."""
    rows = list(db.scalars(select(Contact).where(Contact.inbox_id == inbox.id, labels.has_name(db, "contacts",
                                                                                               label_name))
                           .order_by(Contact.id)))
    first: dict[str, str] = {}
    for cid, address in db.execute(select(ContactEmail.contact_id, ContactEmail.address)
                                   .where(ContactEmail.inbox_id == inbox.id)
                                   .order_by(ContactEmail.contact_id, ContactEmail.position)):
        first.setdefault(cid, address)
    return [(c, first.get(c.id)) for c in rows]


def _excluded(db: Session, inbox: Inbox) -> tuple[set[str], set[str]]:
    """(unsubscribed, hard-bounced) addresses of this inbox, lower case."""
    gone = {a.lower() for a in db.scalars(select(Unsubscribe.address).where(Unsubscribe.inbox_id == inbox.id))}
    bounced = {a.lower() for a in db.scalars(
        select(OutboundRecipient.recipient).join(OutboundQueue, OutboundQueue.id == OutboundRecipient.queue_id)
        .where(OutboundQueue.inbox_id == inbox.id, OutboundRecipient.status == "bounced"))}
    return gone, bounced


def _run(db: Session, settings: Settings, principal: Principal, inbox: Inbox, broadcast: Broadcast,
         label_name: str) -> None:
    """One message per contact through outbound.send (priority 1); skips recorded with their reason."""
    gone, bounced = _excluded(db, inbox)
    seen: set[str] = set()
    template = (templates.get_template(db, principal, broadcast.request["template_id"], field="template_id")
                if broadcast.request.get("template_id") else None)
    for contact, address in _targets(db, inbox, label_name):
        reason = _skip_reason(address, gone, bounced, seen)
        row = BroadcastRecipient(id=new_id("bcr"), broadcast_id=broadcast.id, address=address or "",
                                 skip_reason=reason)
        db.add(row)
        if reason:
            broadcast.skipped += 1
            continue
        seen.add(address.lower())
        message = outbound.send(db, settings, principal, inbox, _send_request(settings, inbox, broadcast, template,
                                                                            contact, address),
                                priority=BROADCAST_PRIORITY)
        row.message_id = message.id
        broadcast.recipients += 1
    broadcast.status = "queued"
    events.emit(db, "broadcast.queued", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=broadcast.id,
                actor=principal.id, payload={"recipients": broadcast.recipients, "skipped": broadcast.skipped})


def _skip_reason(address: str | None, gone: set[str], bounced: set[str], seen: set[str]) -> str:
    if not address:
        return "no_address"
    key = address.lower()
    return ("unsubscribed" if key in gone else "bounced" if key in bounced else "duplicate" if key in seen else "")


def _send_request(settings: Settings, inbox: Inbox, broadcast: Broadcast, template, contact: Contact,  # noqa: ANN001
                  address: str) -> compose.SendRequest:
    fields = dict(broadcast.request)
    if template is not None:
        values = {**fields.get("template_values", {}), "full_name": contact.full_name, "company": contact.company,
                  "email": address}
        fields = {**templates.render(template, values), **{k: v for k, v in fields.items() if v and k in
                                                          ("subject", "text_body", "html_body")}}
    headers = {"List-Unsubscribe": f"<{unsubscribe_url(settings, inbox.id, address)}>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return compose.SendRequest(to=[compose.Recipient(address, contact.full_name)], subject=fields.get("subject"),
                               text_body=fields.get("text_body") or None, html_body=fields.get("html_body") or None,
                               headers=headers)


# --- approval -------------------------------------------------------------------------------
def release(db: Session, settings: Settings, approval, principal: Principal, now: dt.datetime) -> None:  # noqa: ANN001
    """An approved broadcast: send it now, as the approving person."""
    broadcast = db.get(Broadcast, approval.resource_id, with_for_update=True) if approval.resource_id else None
    if broadcast is None or broadcast.status != "held":
        raise ConflictError("The held broadcast no longer exists, so there is nothing to send.",
                            fix="Reject the approval.")
    inbox = db.get(Inbox, broadcast.inbox_id)
    label = labels.get_label(db, inbox, broadcast.label_id)
    _run(db, settings, principal, inbox, broadcast, label.name)


def discard(db: Session, approval, status: str, now: dt.datetime) -> None:  # noqa: ANN001
    """A rejected or expired broadcast: nothing is sent; its status says why."""
    broadcast = db.get(Broadcast, approval.resource_id) if approval.resource_id else None
    if broadcast is not None and broadcast.status == "held":
        broadcast.status = status


def register_approval_handlers() -> None:
    """A held broadcast goes ahead or is dropped through these (called at start)."""
    approvals.register_action("broadcast", approvals.ActionHandler(release=release, discard=discard))


# --- status ---------------------------------------------------------------------------------
def get_broadcast(db: Session, inbox: Inbox, broadcast_id: str) -> Broadcast:
    """A broadcast of this inbox; 404 for any other."""
    return tenancy.get_owned(db, Broadcast, broadcast_id, inbox.tenant_id, where=(Broadcast.inbox_id == inbox.id,),
                             message=_NOT_FOUND)


def list_broadcasts(db: Session, inbox: Inbox, limit: int = 50) -> list[Broadcast]:
    """The inbox's latest broadcasts, newest first (the web UI's page)."""
    return list(db.scalars(select(Broadcast).where(Broadcast.inbox_id == inbox.id)
                           .order_by(Broadcast.id.desc()).limit(limit)))


def complete_finished(db: Session, *, limit: int = 50) -> int:
    """The worker's pass: mark the broadcasts with nothing left to deliver completed and emit
    `broadcast.completed` (a status read does the same; whichever comes first announces it)."""
    done = 0
    for broadcast in db.scalars(select(Broadcast).where(Broadcast.status == "queued")
                                .order_by(Broadcast.id).limit(limit)):
        done += status_of(db, broadcast)["status"] == "completed"
    return done


def status_of(db: Session, broadcast: Broadcast, *, announce: bool = True) -> dict:
    """{broadcast_id, status, recipients, queued, delivered, bounced, skipped}; the first read that finds
    nothing left to deliver marks it completed and emits broadcast.completed (announce=False: a
    read-only page only reports it)."""
    counts = dict(db.execute(select(OutboundRecipient.status, func.count()).join(
        BroadcastRecipient, BroadcastRecipient.message_id == OutboundRecipient.message_id)
        .where(BroadcastRecipient.broadcast_id == broadcast.id).group_by(OutboundRecipient.status)).all())
    queued = counts.get("queued", 0) + counts.get("deferred", 0)
    if broadcast.status == "queued" and queued == 0 and broadcast.recipients and announce and db.execute(
            update(Broadcast).where(Broadcast.id == broadcast.id, Broadcast.status == "queued")
            .values(status="completed")).rowcount == 1:  # conditional: two workers never both announce it
        broadcast.status = "completed"
        events.emit(db, "broadcast.completed", tenant_id=broadcast.tenant_id, inbox_id=broadcast.inbox_id,
                    resource_id=broadcast.id, payload={"delivered": counts.get("delivered", 0),
                                                       "bounced": counts.get("bounced", 0)})
    return {"broadcast_id": broadcast.id, "status": broadcast.status, "recipients": broadcast.recipients,
            "queued": queued, "delivered": counts.get("delivered", 0),
            "bounced": counts.get("bounced", 0) + counts.get("failed", 0), "skipped": broadcast.skipped,
            "skipped_addresses": [{"address": a, "reason": r} for a, r in db.execute(
                select(BroadcastRecipient.address, BroadcastRecipient.skip_reason)
                .where(BroadcastRecipient.broadcast_id == broadcast.id, BroadcastRecipient.skip_reason != "")
                .order_by(BroadcastRecipient.id).limit(500))]}
