"""The event table: every state change appends one, in the same transaction as the change."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Event

EVENT_TYPES = (
    "message.received", "message.sent", "message.delivered", "message.bounced",
    "message.deferred", "message.updated", "message.deleted", "domain.verified",
    "domain.dkim_rotation_started", "domain.dkim_rotated", "inbox.created", "inbox.deleted", "token.created", "token.revoked", "token.paused",
    "token.resumed", "token.rotated", "token.narrowed", "user.signed_up", "waitlist.approved",
    "waitlist.rejected", "approval.requested", "approval.approved", "approval.rejected",
    "approval.expired",
)


def emit(db: Session, type_: str, *, tenant_id: str | None, inbox_id: str | None = None,
         resource_id: str | None = None, actor: str | None = None,
         payload: dict[str, Any] | None = None) -> Event:
    """Append an event to the current unit of work."""
    event = Event(id=new_id("evt"), type=type_, tenant_id=tenant_id, inbox_id=inbox_id,
                  resource_id=resource_id, actor=actor, occurred_at=utcnow(), payload=payload or {})
    db.add(event)
    return event


def list_events(db: Session, *, inbox_id: str, after: str | None, types: list[str] | None,
                limit: int) -> list[Event]:
    """Events of one inbox in order, strictly after the given event id."""
    query = select(Event).where(Event.inbox_id == inbox_id)
    if after:
        query = query.where(Event.id > after)
    if types:
        query = query.where(Event.type.in_(types))
    return list(db.scalars(query.order_by(Event.id).limit(limit)))


def event_to_dict(event: Event) -> dict[str, Any]:
    return {"event_id": event.id, "type": event.type, "inbox_id": event.inbox_id,
            "resource_id": event.resource_id, "occurred_at": iso(event.occurred_at),
            "payload": event.payload}


def iso(value) -> str | None:  # noqa: ANN001
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def list_tenant_events(db: Session, tenant_id: str, *, before: str | None, types: list[str] | None,
                       limit: int) -> list[Event]:
    """A tenant's events, newest first, strictly before the given event id (the web UI's feed)."""
    query = select(Event).where(Event.tenant_id == tenant_id)
    if before:
        query = query.where(Event.id < before)
    if types:
        query = query.where(Event.type.in_(types))
    return list(db.scalars(query.order_by(Event.id.desc()).limit(limit)))
