"""The activity timeline (issue 21 point 1, contract section 15): the history with one person.

One projector feeds it: a worker-side reader of the event table on the shared tailer
(automation/tailer.py, cursor `activity`) turns each event about mail, calendar, tasks,
approvals and notes into one `activity_items` row per correspondent it concerns, and hands the
mail events on to the relationship graph (relationships.py). No area writes activity itself.

- Deduplicated on inbox + address + type + resource: the row's unique key. An event read again
  (two workers, a cursor moved back, a replay) inserts nothing, and the relationship graph only
  counts a message when its activity row was new, so it is replay-safe too.
- Pages follow the event's `seq` (commit order, the same order as GET /v1/events/), oldest first;
  the cursor is the last row's `seq.id`, so new activity lands after every page already read and
  never shifts one. `since` keeps rows that occurred at or after a time.
- Kept two years (RETENTION_DAYS); the worker's purge sweep deletes older rows a batch at a time.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance import timeinput
from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import new_id
from appliance.models import (ActivityItem, Approval, CalendarEvent, ContactEmail, Event, Inbox, Message, Task,
                              Tenant)
from appliance.services.automation import tailer
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.identity.settings import inbox_settings
from appliance.services.intelligence import relationships
from appliance.services.validation import normalize_email
from appliance.services.workspace import contacts

TAILER = "activity"
BATCH = 500
RETENTION_DAYS = 730
PURGE_BATCH = 5000
MAX_PARTICIPANTS = 50  # one line's participant list (a message to 500 people keeps the first 50)
TYPES = ("message.received", "message.sent", "message.delivered", "message.bounced", "event.created",
         "task.created", "task.updated", "task.completed", "task.due", "task.deleted", "approval.requested",
         "approval.approved", "approval.rejected", "approval.expired", "note.created")
RENAMED = {"event.created": "calendar_event.created"}  # the contract's name for the calendar's type
CURSOR = re.compile(r"^(\d{1,19})\.(act_[0-9A-HJKMNP-TV-Z]{26})$")
# Built once: a statement made per row spends more time in SQLAlchemy than in the database.
_INSERT = {name: dialect.insert(ActivityItem.__table__).on_conflict_do_nothing().returning(ActivityItem.__table__.c.id)
           for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


# --- the projector -----------------------------------------------------------------------------
def project(db: Session, *, batch: int = BATCH) -> int:
    """Project the next events after the `activity` cursor and move it, in the caller's
    transaction; returns how many events were read (call again while it returns batch)."""
    own: dict[str, str | None] = {}
    graph = relationships.Batch(db)

    def handle(event: Event) -> None:
        if not event.inbox_id or not event.tenant_id:
            return
        if event.inbox_id not in own:
            inbox = db.get(Inbox, event.inbox_id)
            own[event.inbox_id] = inbox.address if inbox is not None else None
        if own[event.inbox_id] is not None:
            apply_event(graph, event, own[event.inbox_id])
    with db.no_autoflush:  # the graph's new rows are known to `graph`; they are written once, at the end
        return tailer.tail(db, TAILER, handle, types=TYPES, batch=batch)


def apply_event(graph: relationships.Batch, event: Event, own_address: str) -> None:
    """One event: an activity row per correspondent it concerns; received (but not automated) and
    sent mail also feed the relationship graph (only when the row is new: replays count nothing)."""
    db = graph.db
    line = _line(db, event, own_address)
    if line is None:
        return
    addresses, participants, summary, details = line
    kind = RENAMED.get(event.type, event.type)
    new = [a for a in addresses if a != own_address and _insert(db, event, kind, a, participants, summary, details)]
    if new and event.type in ("message.received", "message.sent") and not details.get("_automated"):
        relationships.observe(graph, tenant_id=event.tenant_id, inbox_id=event.inbox_id,
                              direction="inbound" if event.type == "message.received" else "outbound",
                              addresses=new, names=details.pop("_names", {}), participants=participants,
                              thread_id=details.get("thread_id"), at=event.occurred_at)


def _insert(db: Session, event: Event, kind: str, address: str, participants: list[str], summary: str,
            details: dict) -> bool:
    row = {"id": new_id("act"), "tenant_id": event.tenant_id, "inbox_id": event.inbox_id, "address": address,
           "type": kind, "resource_id": event.resource_id or "", "seq": event.seq, "event_id": event.id,
           "participants": participants, "summary": summary[:500],
           "details": {k: v for k, v in details.items() if not k.startswith("_")}, "occurred_at": event.occurred_at}
    # RETURNING tells a new row from a duplicate (psycopg reports no rowcount for DO NOTHING).
    return db.execute(_INSERT[db.get_bind().dialect.name], row).first() is not None


def _line(db: Session, event: Event, own: str) -> tuple[list[str], list[str], str, dict] | None:
    """(addresses, participants, summary, metadata) of an event, or None when it concerns no one."""
    area = event.type.split(".", 1)[0]
    if area == "message":
        return _message_line(db, event, own)
    if area == "event":
        row = db.get(CalendarEvent, event.resource_id) if event.resource_id else None
        if row is None:
            return None
        people = _clean([row.organizer, *(p.get("email", "") for p in row.participants or [])], own)
        return people, people, row.title, {"start": (event.payload or {}).get("start"), "status": row.status}
    if area == "task":
        return _task_line(db, event, own)
    if area == "approval":
        row = db.get(Approval, event.resource_id) if event.resource_id else None
        if row is None:
            return None
        people = _clean((row.payload or {}).get("recipients") or (row.summary or {}).get("recipients") or [], own)
        subject = (row.summary or {}).get("subject") or row.action_type
        return people, people, subject, {"action_type": row.action_type, "resource_id": row.resource_id,
                                         "status": row.status}
    thread_id = (event.payload or {}).get("thread_id")  # note.created
    people = _thread_people(db, event.inbox_id, thread_id, own) if thread_id else []
    return people, people, "Note on the thread", {"thread_id": thread_id}


def _message_line(db: Session, event: Event, own: str) -> tuple[list[str], list[str], str, dict] | None:
    payload = event.payload or {}
    message = db.get(Message, event.resource_id) if event.resource_id else None
    subject = message.subject if message is not None else payload.get("subject", "")
    thread_id = message.thread_id if message is not None else payload.get("thread_id")
    details: dict[str, Any] = {"message_id": event.resource_id, "thread_id": thread_id}
    if event.type == "message.received":
        sender = (message.from_email if message is not None else payload.get("from")) or ""
        everyone = [sender]
        if message is not None:
            everyone += [a.get("email", "") for a in (message.to_addrs or []) + (message.cc_addrs or [])]
            details["_names"] = {sender.lower(): message.from_name}
            # Bulk, list and robot mail (and bounces) is history, but says nothing about who matters.
            details["_automated"] = bool(message.automated) or sender.lower().startswith(("mailer-daemon@",
                                                                                       "postmaster@"))
        return _clean([sender], own), _clean(everyone, own), subject, details
    recipients = _clean(payload.get("recipients") or [], own)
    if event.type in ("message.delivered", "message.bounced"):
        details["smtp_reply"] = payload.get("smtp_reply", "")
    elif message is not None:
        details["_names"] = {a.get("email", "").lower(): a.get("name", "")
                             for a in (message.to_addrs or []) + (message.cc_addrs or [])}
    return recipients, recipients, subject, details


def _task_line(db: Session, event: Event, own: str) -> tuple[list[str], list[str], str, dict] | None:
    payload = event.payload or {}
    task = db.get(Task, event.resource_id) if event.resource_id else None
    if task is not None:
        related_type, related_id, summary, status = task.related_type, task.related_id, task.summary, task.status
    elif event.type == "task.deleted":  # the row is gone: its event carries what it was about
        related = payload.get("related") or {}
        related_type, related_id = related.get("type"), related.get("id")
        summary, status = payload.get("summary", ""), payload.get("status")
    else:
        return None
    if not related_id or related_type not in ("message", "thread", "contact"):
        return None
    if related_type == "contact":
        people = _clean(db.scalars(select(ContactEmail.address).where(ContactEmail.contact_id == related_id,
                                                                      ContactEmail.inbox_id == event.inbox_id)), own)
    else:
        thread_id = related_id
        if related_type == "message":
            message = db.get(Message, related_id)
            thread_id = message.thread_id if message is not None else None
        people = _thread_people(db, event.inbox_id, thread_id, own) if thread_id else []
    return people, people, summary, {"status": status, "due": payload.get("due"),
                                     "related": {"type": related_type, "id": related_id}}


def _thread_people(db: Session, inbox_id: str, thread_id: str, own: str) -> list[str]:
    """Everyone on the thread's messages in this inbox (the first MAX_PARTICIPANTS)."""
    found: list[str] = []
    for sender, to, cc in db.execute(select(Message.from_email, Message.to_addrs, Message.cc_addrs).where(
            Message.inbox_id == inbox_id, Message.thread_id == thread_id).order_by(Message.created_at).limit(200)):
        found += [sender, *(a.get("email", "") for a in (to or []) + (cc or []))]
    return _clean(found, own)


def _clean(addresses: Iterable[str], own: str) -> list[str]:
    """Lower-cased, without the inbox's own address and empties, first occurrence kept."""
    out = dict.fromkeys(a.strip().lower() for a in addresses if isinstance(a, str) and "@" in a)
    out.pop(own, None)
    return list(out)[:MAX_PARTICIPANTS]


def purge_activity(db: Session, now: dt.datetime | None = None, *, batch: int = PURGE_BATCH) -> int:
    """Delete up to `batch` activity rows older than two years; returns how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=RETENTION_DAYS)
    ids = list(db.scalars(select(ActivityItem.id).where(ActivityItem.occurred_at < cutoff).limit(batch)))
    if ids:
        db.execute(delete(ActivityItem).where(ActivityItem.id.in_(ids)))
    return len(ids)


# --- reading -----------------------------------------------------------------------------------
def list_activity(db: Session, principal: Principal, inbox_id: str | None, *, contact_id: str | None = None,
                  address: str | None = None, cursor: str | None = None, since: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
    """GET /v1/activity/: one contact's (or address's) history in the inbox, oldest first."""
    inbox = inbox_for(db, principal, inbox_id)
    addresses = _addresses(db, inbox, contact_id, address)
    query = select(ActivityItem).where(ActivityItem.inbox_id == inbox.id, ActivityItem.address.in_(addresses))
    if cursor:
        query = query.where(tuple_(ActivityItem.seq, ActivityItem.id) > _cursor(cursor))
    if since:
        query = query.where(ActivityItem.occurred_at >= _since(db, inbox, since))
    rows = list(db.scalars(query.order_by(ActivityItem.seq, ActivityItem.id).limit(limit + 1)))
    page = rows[:limit]
    owners = _contact_ids(db, inbox.id, {r.address for r in page})
    return {"events": [item_to_dict(r, owners.get(r.address)) for r in page],
            "cursor": f"{page[-1].seq}.{page[-1].id}" if len(rows) > limit else None}


def _addresses(db: Session, inbox: Inbox, contact_id: str | None, address: str | None) -> list[str]:
    if contact_id and address:
        raise ValidationError("Send contact_id or address, not both.", field="address")
    if contact_id:
        contact = contacts.get_contact(db, inbox, contact_id)
        return [e["address"] for e in contacts.emails_of(db, contact)]
    if address:
        return [normalize_email(address, "address")]
    raise ValidationError("Name the person: contact_id or address.", field="contact_id",
                          fix="Add ?contact_id=ctc_… (GET /v1/contacts/) or ?address=someone@example.com")


def _cursor(value: str) -> tuple[int, str]:
    found = CURSOR.match(value)
    if found is None:
        raise ValidationError("cursor: not a cursor of this list", field="cursor",
                              fix="Send back the cursor of the previous page as it was.")
    return int(found.group(1)), found.group(2)


def _since(db: Session, inbox: Inbox, value: str) -> dt.datetime:
    zone = inbox_settings(inbox, db.get(Tenant, inbox.tenant_id))["default_timezone"]
    try:
        return timeinput.parse_instant(value, zone=zone, field="since").at.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise ValidationError(f"since: '{value}' is out of range", field="since", fix=timeinput.INSTANT_FIX) from None


def _contact_ids(db: Session, inbox_id: str, addresses: set[str]) -> dict[str, str]:
    if not addresses:
        return {}
    return dict(db.execute(select(ContactEmail.address, ContactEmail.contact_id).where(
        ContactEmail.inbox_id == inbox_id, ContactEmail.address.in_(addresses))).all())


def item_to_dict(row: ActivityItem, contact_id: str | None) -> dict[str, Any]:
    """An activity row as the contract's object."""
    return {"id": row.id, "inbox_id": row.inbox_id, "contact_address": row.address, "contact_id": contact_id,
            "type": row.type, "resource_id": row.resource_id or None, "participants": list(row.participants or []),
            "summary": row.summary, "occurred_at": _iso(row.occurred_at), "metadata": dict(row.details or {})}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def timeline(db: Session, inbox: Inbox, addresses: list[str], *, limit: int = 100) -> list[dict[str, Any]]:
    """The web UI's view: the newest `limit` rows for these addresses, newest first."""
    if not addresses:
        return []
    rows = db.scalars(select(ActivityItem).where(ActivityItem.inbox_id == inbox.id,
                                                 ActivityItem.address.in_(addresses))
                      .order_by(ActivityItem.seq.desc(), ActivityItem.id.desc()).limit(limit))
    return [item_to_dict(r, None) for r in rows]


def contact_timeline(db: Session, principal: Principal, inbox_id: str, contact_id: str, *,
                     limit: int = 100) -> tuple[Inbox, dict[str, Any], list[dict[str, Any]]]:
    """The web UI's contact timeline: the inbox, the contact, and its newest `limit` items."""
    inbox = inbox_for(db, principal, inbox_id)
    contact = contacts.contact_to_dict(db, contacts.get_contact(db, inbox, contact_id), detail=True)
    addresses = [e["address"] for e in contact.get("emails", [])]
    return inbox, contact, timeline(db, inbox, addresses, limit=limit)
