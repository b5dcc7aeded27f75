"""The agenda (contract section 12): one list of what needs an inbox's attention, and when.

Each kind of item comes from a source registered with `register_source(kind, fn, scope=...)`;
`fn(db, inbox_id, frm, to)` returns item dicts `{"id", "title", "at", "pending", "resource"}`
(`at`: an aware datetime, an ISO 8601 string, or None for undated items). This module registers
open tasks (`task`, for callers holding task:read) and missed replies (`missed_reply`); the
calendar, assignments, mentions and contact share offers register theirs the same way, so the
agenda needs no change when an area arrives. Items are ordered undated pending items first,
then by `at`, then kind and id; the cursor is that key, so paging is stable while items come
and go. `from`/`to` bound dated items; a pending item due before `from` (an overdue task, a
missed reply) still shows, since it still needs attention.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from appliance import timeinput
from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.models import Inbox, Message, MessageRaw, Thread
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.mail.mime import is_automated
from appliance.services.workspace import tasks

Source = Callable[[Session, str, "dt.datetime | None", "dt.datetime | None"], list[dict]]
_SOURCES: dict[str, tuple[Source, str | None]] = {}
MISSED_AFTER = dt.timedelta(hours=24)
UNSENT = ("held", "rejected", "expired")  # outbound rows that never left: not a reply yet
_CURSOR_FIX = "Pass the cursor of the previous answer as it was, or leave it out to start again."


def register_source(kind: str, fn: Source, *, scope: str | None = None) -> None:
    """Add (or replace) the source of one kind of agenda item; `scope`: the caller must hold it."""
    _SOURCES[kind] = (fn, scope)


def register_pending(kind: str, fn: Callable[[Session, str], list[dict]], *, scope: str | None = None) -> None:
    """Register an area's `pending_agenda_items(db, inbox_id)` (it takes no time bounds)."""
    register_source(kind, lambda db, inbox_id, frm, to: fn(db, inbox_id), scope=scope)


def sources() -> list[str]:
    """The kinds registered, in registration order."""
    return list(_SOURCES)


# --- the built-in sources ----------------------------------------------------------------------
def task_items(db: Session, inbox_id: str, frm: dt.datetime | None, to: dt.datetime | None) -> list[dict]:
    """Open tasks of the inbox (undated, or due before `to`)."""
    zone = db.scalar(select(Inbox.default_timezone).where(Inbox.id == inbox_id))
    return [{"id": t.id, "title": t.summary, "at": t.due, "pending": True, "resource": tasks.task_to_dict(t, zone)}
            for t in tasks.open_tasks(db, inbox_id, until=to)]


def missed_replies(db: Session, inbox_id: str, frm: dt.datetime | None, to: dt.datetime | None,
                   *, now: dt.datetime | None = None) -> list[dict]:
    """Threads waiting 24 h for a reply: received mail from a person (not automated) with no
    reply sent after it. `at` is when the reply fell due (the first waiting message + 24 h)."""
    cutoff = (now or utcnow()) - MISSED_AFTER
    first: dict[str, Any] = {}
    for row in _waiting(db, inbox_id):
        if row.thread_id not in first:
            first[row.thread_id] = row
    overdue = {t: r for t, r in first.items() if r.created_at <= cutoff}
    subjects = dict(db.execute(select(Thread.id, Thread.subject).where(Thread.id.in_(overdue))).all()) if overdue else {}
    return [{"id": thread_id, "title": subjects.get(thread_id) or row.subject or "(no subject)",
             "at": row.created_at + MISSED_AFTER, "pending": True,
             "resource": {"type": "thread", "thread_id": thread_id, "message_id": row.id,
                          "from": {"email": row.from_email, "name": row.from_name},
                          "received_at": row.created_at}}
            for thread_id, row in overdue.items()]


def _waiting(db: Session, inbox_id: str) -> list[Any]:
    """Received, not automated messages of the inbox that no sent reply follows, oldest first."""
    reply = aliased(Message)
    answered = select(reply.id).where(
        reply.inbox_id == inbox_id, reply.thread_id == Message.thread_id, reply.direction == "outbound",
        reply.status.not_in(UNSENT), reply.created_at >= Message.created_at).exists()
    rows = db.execute(select(Message.id, Message.thread_id, Message.created_at, Message.subject, Message.from_email,
                             Message.from_name, Message.automated, Message.envelope_from)
                      .where(Message.inbox_id == inbox_id, Message.direction == "inbound",
                             Message.automated.is_not(True), ~answered)
                      .order_by(Message.created_at, Message.id)).all()
    unknown = _automated_by_headers(db, [r.id for r in rows if r.automated is None])
    # A null sender (<>) is a bounce or another notice: never awaiting a reply either.
    return [r for r in rows if r.envelope_from and not unknown.get(r.id, False)]


def _automated_by_headers(db: Session, ids: list[str]) -> dict[str, bool]:
    """For mail stored before `messages.automated` existed: read the stored headers."""
    out: dict[str, bool] = {}
    for start in range(0, len(ids), 200):
        for message_id, raw in db.execute(select(MessageRaw.message_id, MessageRaw.raw)
                                          .where(MessageRaw.message_id.in_(ids[start:start + 200]))):
            head = bytes(raw).split(b"\r\n\r\n", 1)[0][:65536]
            out[message_id] = is_automated(BytesParser(policy=policy.default).parsebytes(head, headersonly=True))
    return out


register_source("task", task_items, scope="task:read")
register_source("missed_reply", missed_replies)


# --- the merged list ---------------------------------------------------------------------------
def _instant(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return timeinput.parse_instant(str(value), zone="UTC").at


def _key(item: dict) -> list:
    """The sort key (and cursor): undated pending first, then by time, then kind and id."""
    at = item["at"]
    group = (0 if item["pending"] else 2) if at is None else 1
    return [group, at.astimezone(dt.timezone.utc).isoformat() if at else "", item["kind"], item["id"]]


def encode_cursor(key: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list:
    """The key a cursor names; 400 for anything this module did not make."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationError("cursor: not a cursor of this list", field="cursor", fix=_CURSOR_FIX) from None
    if not (isinstance(key, list) and len(key) == 4 and isinstance(key[0], int)
            and all(isinstance(k, str) for k in key[1:])):
        raise ValidationError("cursor: not a cursor of this list", field="cursor", fix=_CURSOR_FIX)
    return key


def _collect(db: Session, principal: Principal, inbox_id: str, frm: dt.datetime | None,
             to: dt.datetime | None) -> list[dict]:
    items = []
    for kind, (fn, scope) in _SOURCES.items():
        if scope is not None and not principal.has_scope(scope):
            continue
        for raw in fn(db, inbox_id, frm, to):
            item = {"kind": kind, "id": str(raw["id"]), "title": str(raw.get("title") or ""),
                    "at": _instant(raw.get("at")), "pending": bool(raw.get("pending")),
                    "resource": raw.get("resource") or {}}
            at = item["at"]
            if at is None or ((to is None or at < to) and (frm is None or at >= frm or item["pending"])):
                items.append(item)
    return items


def _bound(value: str | None, zone: str | None, now: dt.datetime, field: str) -> dt.datetime | None:
    return None if value is None else timeinput.parse_instant(value, zone=zone, now=now, field=field).at


def agenda(db: Session, principal: Principal, inbox_id: str | None, *, frm: str | None = None,
           to: str | None = None, cursor: str | None = None, limit: int = 50,
           now: dt.datetime | None = None) -> dict:
    """One page of the inbox's agenda: `{"items": [...], "cursor": next or None}`."""
    inbox = inbox_for(db, principal, inbox_id)
    now = now or utcnow()
    lo, hi = _bound(frm, inbox.default_timezone, now, "from"), _bound(to, inbox.default_timezone, now, "to")
    if lo is not None and hi is not None and hi <= lo:
        raise ValidationError("to: must be after from", field="to")
    after = decode_cursor(cursor) if cursor else None
    items = sorted(_collect(db, principal, inbox.id, lo, hi), key=_key)
    if after is not None:
        items = [i for i in items if _key(i) > after]
    page = items[:limit]
    return {"items": [_render(i, inbox.default_timezone) for i in page],
            "cursor": encode_cursor(_key(page[-1])) if len(items) > limit else None}


def _render(item: dict, zone: str | None) -> dict:
    resource = {k: timeinput.render(v, zone) if isinstance(v, dt.datetime) else v
                for k, v in item["resource"].items()}
    return {**item, "at": timeinput.render(item["at"], zone), "resource": resource}
