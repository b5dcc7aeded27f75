"""Thread notes (contract section 10): what a team writes to itself about a conversation.

Rules kept here:
- A note belongs to one thread and is read by whoever may read that thread (its inbox, or the
  inbox it is assigned to). It is stored only in `thread_notes`, never in a message row, so no
  sending path can put it into mail.
- A note expires 90 days after it is written (`NOTE_LIFETIME`, measured on appliance.clock, so
  tests move time): an expired note is no longer listed or found, and is purged.
- Mentions name teammate addresses: each must be a live inbox of the tenant (else 400, the same
  answer for an unknown address and another tenant's), and each mentioned inbox but the author's
  gets a pending agenda item (`pending_agenda_items`).
- Only the note's author (the same user session or agent token) deletes it; anyone else is 403.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ForbiddenError, ValidationError
from appliance.ids import new_id
from appliance.models import Inbox, NoteMention, Thread, ThreadNote
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso
from appliance.services.identity.auth import Principal
from appliance.services.team import assignment

NOTE_LIFETIME = dt.timedelta(days=90)
MAX_BODY = 20_000
MAX_MENTIONS = 20
_NOT_FOUND = "No such note on this thread."


def _mentioned(db: Session, tenant_id: str, addresses: list[str]) -> list[Inbox]:
    """The live inboxes of the tenant the addresses name, in order; 400 naming the first other."""
    out: dict[str, Inbox] = {}
    for index, address in enumerate(addresses):
        inbox = tenancy.find_owned(db, Inbox, tenant_id, func.lower(Inbox.address) == address.strip().lower(),
                                   Inbox.status != "deleted")
        if inbox is None:
            raise ValidationError(f"mentions[{index}]: {address!r} is not an inbox of your team",
                                  field=f"mentions[{index}]", fix="Mention your teammates' inbox addresses.")
        out.setdefault(inbox.id, inbox)
    return list(out.values())


def create_note(db: Session, principal: Principal, inbox: Inbox, thread_id: str, body: str,
                mentions: list[str]) -> ThreadNote:
    """A note on a thread the inbox may act in; mentioned teammates get a pending agenda item."""
    home = assignment.thread_inbox(db, inbox, thread_id)
    if not body.strip() or len(body) > MAX_BODY:
        raise ValidationError(f"body must be 1 to {MAX_BODY} characters", field="body")
    if len(mentions) > MAX_MENTIONS:
        raise ValidationError(f"mentions: at most {MAX_MENTIONS}", field="mentions")
    mentioned = _mentioned(db, inbox.tenant_id, mentions)
    purge_expired(db, inbox.tenant_id)
    now = utcnow()
    note = ThreadNote(id=new_id("not"), tenant_id=inbox.tenant_id, thread_id=thread_id, author_inbox_id=inbox.id,
                      author_id=principal.id, body=body, mentions=[m.strip() for m in mentions], created_at=now,
                      expires_at=now + NOTE_LIFETIME)
    db.add(note)
    db.flush()
    for target in (m for m in mentioned if m.id != inbox.id):  # the author is not reminded of their own note
        db.add(NoteMention(id=new_id("mnt"), tenant_id=inbox.tenant_id, note_id=note.id, inbox_id=target.id))
    events.emit(db, "note.created", tenant_id=inbox.tenant_id, inbox_id=home.id, resource_id=note.id,
                actor=principal.id, payload={"thread_id": thread_id, "author_inbox_id": inbox.id,
                                             "mentioned_inbox_ids": [m.id for m in mentioned if m.id != inbox.id]})
    db.flush()
    return note


def list_notes(db: Session, inbox: Inbox, thread_id: str) -> list[ThreadNote]:
    """The live notes of a thread the inbox may read, oldest first."""
    assignment.thread_inbox(db, inbox, thread_id)
    return list(db.scalars(tenancy.owned(select(ThreadNote), ThreadNote, inbox.tenant_id).where(
        ThreadNote.thread_id == thread_id, ThreadNote.expires_at > utcnow())
        .order_by(ThreadNote.created_at, ThreadNote.id)))


def delete_note(db: Session, principal: Principal, inbox: Inbox, thread_id: str, note_id: str) -> None:
    """Delete a note: its author only."""
    assignment.thread_inbox(db, inbox, thread_id)
    note = tenancy.get_owned(db, ThreadNote, note_id, inbox.tenant_id,
                             where=(ThreadNote.thread_id == thread_id, ThreadNote.expires_at > utcnow()),
                             message=_NOT_FOUND)
    if note.author_id != principal.id:
        raise ForbiddenError("Only the note's author may delete it.")
    events.emit(db, "note.deleted", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=note.id,
                actor=principal.id, payload={"thread_id": thread_id})
    db.execute(delete(NoteMention).where(NoteMention.note_id == note.id))
    db.delete(note)
    db.flush()


def purge_expired(db: Session, tenant_id: str | None = None) -> int:
    """Delete notes past their 90 days (with their mentions); how many went."""
    expired = select(ThreadNote.id).where(ThreadNote.expires_at <= utcnow())
    if tenant_id is not None:
        expired = expired.where(ThreadNote.tenant_id == tenant_id)
    ids = list(db.scalars(expired))
    if ids:
        db.execute(delete(NoteMention).where(NoteMention.note_id.in_(ids)))
        db.execute(delete(ThreadNote).where(ThreadNote.id.in_(ids)))
    return len(ids)


def note_to_dict(note: ThreadNote) -> dict:
    return {"note_id": note.id, "thread_id": note.thread_id, "author_inbox_id": note.author_inbox_id,
            "body": note.body, "mentions": list(note.mentions or []), "created_at": iso(note.created_at),
            "expires_at": iso(note.expires_at)}


def pending_agenda_items(db: Session, inbox_id: str) -> list[dict]:
    """The inbox's undated pending agenda items of this area: live notes mentioning it, and
    threads assigned to it. For GET /v1/agenda/ (issue 18)."""
    now = utcnow()
    rows = db.execute(select(ThreadNote, Thread).join(NoteMention, NoteMention.note_id == ThreadNote.id)
                      .join(Thread, Thread.id == ThreadNote.thread_id)
                      .where(NoteMention.inbox_id == inbox_id, ThreadNote.expires_at > now)
                      .order_by(ThreadNote.created_at, ThreadNote.id)).all()
    items: list[dict[str, Any]] = [
        {"kind": "mention", "id": note.id, "title": f"Mentioned in a note on “{thread.subject or '(no subject)'}”",
         "at": None, "pending": True,
         "resource": {"type": "note", "note_id": note.id, "thread_id": thread.id, "inbox_id": thread.inbox_id,
                      "author_inbox_id": note.author_inbox_id, "created_at": iso(note.created_at)}}
        for note, thread in rows]
    items += [
        {"kind": "assignment", "id": row.id, "title": f"Assigned: “{thread.subject or '(no subject)'}”",
         "at": None, "pending": True,
         "resource": {"type": "thread", "thread_id": thread.id, "inbox_id": thread.inbox_id,
                      "assigned_at": iso(row.assigned_at)}}
        for row, thread in assignment.assigned_to(db, inbox_id)]
    return items
