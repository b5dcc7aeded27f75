"""Reading an inbox's mail (contract section 5): lists with search, messages, raw bytes,
attachments and threads; marking read, labelling and deleting.

Every function takes the inbox the caller may act on (see `auth.inbox_for`); a message, thread
or attachment of any other inbox is simply not found.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Row, and_, bindparam, delete, false, func, or_, select, text, update
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql import column, literal_column

from appliance.errors import NotFoundError, ValidationError
from appliance.models import Attachment, Inbox, Message, MessageRaw, MessageSearch, Thread
from appliance.models.calendar import CalendarInvitation
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import usage
from appliance.services.automation.events import iso
from appliance.services.mail import labels as label_registry
from appliance.services.mail import outbound
from appliance.services.mail.inbound import fts_key
from appliance.services.workspace import blobs

SUMMARY_COLUMNS = (Message.id, Message.thread_id, Message.inbox_id, Message.direction, Message.status,
                   Message.subject, Message.is_read, Message.created_at, Message.from_email,
                   Message.from_name, Message.to_addrs, Message.cc_addrs, Message.snippet,
                   Message.has_attachments, Message.labels, Message.received_at, Message.sent_at)
AUTH_DEFAULTS = {"spf": "none", "dkim": "none", "dmarc": "none", "dmarc_aligned": False}
MAX_LABELS = 100


# --- times and cursors ----------------------------------------------------------------------
def zone_of(inbox: Inbox) -> dt.tzinfo:
    """The inbox's display zone; UTC when none is set (or it is no longer known)."""
    if inbox.default_timezone:
        try:
            return ZoneInfo(inbox.default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return dt.timezone.utc


def render_time(value: dt.datetime | None, zone: dt.tzinfo) -> str | None:
    """ISO 8601 in the inbox's zone; Z when the zone is at UTC's offset then."""
    if value is None:
        return None
    local = value.astimezone(zone)
    return iso(value) if local.utcoffset() == dt.timedelta(0) else local.isoformat(timespec="seconds")


def _aware(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    """after/before values: a naive time means the inbox's zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=zone)


def _encode_cursor(when: dt.datetime, row_id: str) -> str:
    raw = json.dumps([when.astimezone(dt.timezone.utc).isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The (time, id) position a cursor names; 400 for anything this module did not make."""
    try:
        when, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = dt.datetime.fromisoformat(when)
        if position.tzinfo is None or not isinstance(row_id, str):
            raise ValueError
        return position, row_id
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationError("cursor is not a cursor this list returned", field="cursor",
                              fix="Pass the cursor of the previous page unchanged, or none.") from None


def _before_position(when_col, id_col, cursor: str):  # noqa: ANN001, ANN202
    """Rows strictly after the cursor in newest-first order: keyset pagination on (time, id),
    so rows arriving between pages neither repeat nor push older ones out of reach."""
    when, row_id = _decode_cursor(cursor)
    # Spelled as a range on the time (then the tie on the id), so the (inbox, time) index serves
    # it and the scan stops after one page; as `time < t OR (time = t AND id < i)` SQLite read
    # every older row of the inbox and sorted them (200 ms on page 2 of a 64,000-message inbox).
    return and_(when_col <= when, or_(when_col < when, id_col < row_id))


def _page(rows: list, limit: int, when_attr: str) -> tuple[list, str | None]:
    page = rows[:limit]
    more = len(rows) > limit
    return page, (_encode_cursor(getattr(page[-1], when_attr), page[-1].id) if more else None)


# --- search ---------------------------------------------------------------------------------
def _matching_ids(db: Session, inbox_id: str, q: str):  # noqa: ANN202
    """The ids of the inbox's messages whose subject, body or addresses hold every word of q."""
    if db.get_bind().dialect.name == "sqlite":
        # Each word becomes a quoted FTS5 phrase: no query syntax reaches the engine, and an
        # address (alice@example.com) matches as the phrase of its parts.
        words = ['"' + w.replace('"', '""') + '"' for w in q.split() if any(c.isalnum() for c in w)]
        if not words:
            return select(Message.id).where(false())
        # The inbox is a token of the index too: FTS5 intersects its short list with the words'
        # lists, instead of reading every inbox's matches and dropping the others' (migration 0004).
        fts = f'inbox_key : "{fts_key(inbox_id)}" AND {{head body}} : ( {" ".join(words)} )'
        return text(FTS_MATCHES).bindparams(fts=fts, fts_inbox=inbox_id).columns(column("message_id"))
    # search_vector: to_tsvector('simple', document), stored, with its GIN index (migration 0004).
    return select(MessageSearch.message_id).where(
        MessageSearch.inbox_id == inbox_id,
        text("message_search.search_vector @@ plainto_tsquery('simple', :fts)").bindparams(fts=q))


# The index keeps no content (migration 0008): its rowid is message_search's search_rowid. CROSS
# JOIN keeps SQLite's join order, index first: left free, the planner walked the inbox's search
# rows and ran the match once for each (a sender in a 15,000-message inbox: 775 ms, not 29 ms).
FTS_MATCHES = ("SELECT message_search.message_id FROM messages_fts CROSS JOIN message_search "
               "ON message_search.search_rowid = messages_fts.rowid "
               "WHERE messages_fts MATCH :fts AND message_search.inbox_id = :fts_inbox")


def _has_label(db: Session, label: str):  # noqa: ANN202
    if db.get_bind().dialect.name == "sqlite":
        return text("EXISTS (SELECT 1 FROM json_each(messages.labels) WHERE json_each.value = :label)"
                    ).bindparams(label=label)
    return text("CAST(messages.labels AS jsonb) @> CAST(:label AS jsonb)").bindparams(label=json.dumps([label]))


# --- messages -------------------------------------------------------------------------------
# The unfiltered first page, what agents poll: built once, only its parameters change per call.
# Pages are rows of the summary columns, not Message objects: building an ORM object per row was a
# third of a page's CPU, and message_to_summary reads the same attributes from a row.
_FIRST_PAGE = (select(*SUMMARY_COLUMNS).where(Message.inbox_id == bindparam("inbox_id"))
               .order_by(Message.created_at.desc(), Message.id.desc()).limit(bindparam("limit")))


def list_messages(db: Session, inbox: Inbox, *, limit: int, cursor: str | None = None,
                  after: dt.datetime | None = None, before: dt.datetime | None = None,
                  thread_id: str | None = None, direction: str | None = None, label: str | None = None,
                  unread: bool | None = None, q: str | None = None) -> tuple[list[Row], str | None]:
    """One page of the inbox's messages (rows of SUMMARY_COLUMNS), newest first, and the next page's cursor."""
    zone = zone_of(inbox)
    if not (cursor or after or before or thread_id or direction or label or unread is not None or (q and q.strip())):
        rows = list(db.execute(_FIRST_PAGE, {"inbox_id": inbox.id, "limit": limit + 1}))
        return _page(rows, limit, "created_at")
    query = select(*SUMMARY_COLUMNS).where(Message.inbox_id == inbox.id)
    if cursor:
        query = query.where(_before_position(Message.created_at, Message.id, cursor))
    if after is not None:
        query = query.where(Message.created_at > _aware(after, zone))
    if before is not None:
        query = query.where(Message.created_at < _aware(before, zone))
    if thread_id:
        query = query.where(Message.thread_id == thread_id)
    if direction:
        query = query.where(Message.direction == direction)
    if label:  # a name, or a lbl_ id of the inbox (contract section 9)
        query = query.where(_has_label(db, label_registry.filter_name(db, inbox, label)))
    if unread is not None:
        query = query.where(Message.is_read.is_(not unread))
    if q and q.strip():
        query = query.where(_searched_id(db).in_(_matching_ids(db, inbox.id, q)))
    rows = list(db.execute(query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)))
    return _page(rows, limit, "created_at")


def _searched_id(db: Session):  # noqa: ANN202
    """messages.id, to test against the matches of q. On SQLite written `+messages.id`, which keeps
    the planner from starting at the matches (fetching and sorting every match of the inbox: 400 ms
    for a word in all of 64,000 messages); it walks the inbox newest first on the (inbox, time, id)
    index instead and stops when the page is full (migration 0004)."""
    return literal_column("+messages.id") if db.get_bind().dialect.name == "sqlite" else Message.id


def get_message(db: Session, inbox: Inbox, message_id: str) -> Message:
    """A message of this inbox; 404 for any other."""
    return tenancy.get_owned(db, Message, message_id, inbox.tenant_id, where=(Message.inbox_id == inbox.id,),
                             message="No such message in this inbox.", fix="List the inbox at GET /v1/messages/.")


def get_raw(db: Session, inbox: Inbox, message_id: str) -> bytes:
    """The stored RFC 5322 bytes, exactly as kept."""
    message = get_message(db, inbox, message_id)
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message.id))
    if raw is None:
        raise NotFoundError("The message has no stored raw copy.")
    return bytes(raw)


def get_attachment(db: Session, inbox: Inbox, message_id: str, attachment_id: str) -> Attachment:
    """An attachment (with its decoded content) of a message of this inbox."""
    message = get_message(db, inbox, message_id)
    return tenancy.get_owned(db, Attachment, attachment_id, inbox.tenant_id,
                             where=(Attachment.message_id == message.id,), message="No such attachment on this message.")


def clean_labels(labels: list[str]) -> list[str]:
    """Labels trimmed, without empties or repeats, in the order given."""
    out = list(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if len(out) > MAX_LABELS:
        raise ValidationError(f"labels: at most {MAX_LABELS} labels", field="labels")
    return out


def update_message(db: Session, inbox: Inbox, message_id: str, *, is_read: bool | None = None,
                   labels: list[str] | None = None, actor: str | None = None) -> Message:
    """Mark a message read or unread and/or replace its labels."""
    message = get_message(db, inbox, message_id)
    changes: dict = {}
    if is_read is not None and is_read != message.is_read:
        message.is_read = changes["is_read"] = is_read
    if labels is not None:
        cleaned = clean_labels(labels)
        if label_registry.set_message_labels(db, inbox, message, cleaned, actor=actor):
            changes["labels"] = cleaned
    if changes:
        events.emit(db, "message.updated", tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                    resource_id=message.id, actor=actor, payload=changes)
    db.flush()
    return message


def delete_message(db: Session, inbox: Inbox, message_id: str, actor: str | None = None) -> None:
    """Delete a message with its raw copy, attachments and search entries; its thread shrinks
    (and goes when it is empty)."""
    message = get_message(db, inbox, message_id)
    thread_id = message.thread_id
    events.emit(db, "message.deleted", tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                resource_id=message.id, actor=actor, payload={"thread_id": thread_id})
    blobs.drop_attachments(db, Attachment.message_id == message.id)  # releases their blobs (issue 19)
    for model in (MessageSearch, MessageRaw):  # on SQLite a trigger unindexes the search row
        db.execute(delete(model).where(model.message_id == message.id))
    db.execute(delete(Message).where(Message.id == message.id))
    usage.record(db, inbox.tenant_id, usage.MAILBOX_BYTES, -message.size, inbox_id=inbox.id)
    db.expunge(message)
    last = db.scalar(select(func.max(Message.created_at)).where(Message.thread_id == thread_id))
    if last is None:
        db.execute(delete(Thread).where(Thread.id == thread_id))
    else:
        db.execute(update(Thread).where(Thread.id == thread_id)
                   .values(message_count=Thread.message_count - 1, last_message_at=last))


# --- threads --------------------------------------------------------------------------------
def list_threads(db: Session, inbox: Inbox, *, limit: int, cursor: str | None = None,
                 q: str | None = None) -> tuple[list[Thread], str | None]:
    """One page of the inbox's threads, most recent activity first."""
    query = select(Thread).where(Thread.inbox_id == inbox.id)
    if cursor:
        query = query.where(_before_position(Thread.last_message_at, Thread.id, cursor))
    if q and q.strip():
        query = query.where(Thread.id.in_(select(Message.thread_id).where(
            Message.inbox_id == inbox.id, Message.id.in_(_matching_ids(db, inbox.id, q)))))
    rows = list(db.scalars(query.order_by(Thread.last_message_at.desc(), Thread.id.desc()).limit(limit + 1)))
    return _page(rows, limit, "last_message_at")


def get_thread(db: Session, inbox: Inbox, thread_id: str) -> tuple[Thread, list[Message]]:
    """A thread of this inbox with its messages, oldest first."""
    thread = tenancy.get_owned(db, Thread, thread_id, inbox.tenant_id, where=(Thread.inbox_id == inbox.id,),
                               message="No such thread in this inbox.", fix="List threads at GET /v1/messages/threads/.")
    messages = list(db.scalars(select(Message).where(Message.thread_id == thread.id, Message.inbox_id == inbox.id)
                               .order_by(Message.created_at, Message.id)))
    return thread, messages


def thread_messages(db: Session, thread_ids: list[str]) -> dict[str, list[Message]]:
    """The messages (summary columns) of several threads, oldest first, in one query."""
    out: dict[str, list[Message]] = {tid: [] for tid in thread_ids}
    if thread_ids:
        rows = db.scalars(select(Message).options(load_only(*SUMMARY_COLUMNS))
                          .where(Message.thread_id.in_(thread_ids)).order_by(Message.created_at, Message.id))
        for message in rows:
            out[message.thread_id].append(message)
    return out


# --- rendering ------------------------------------------------------------------------------
def _address(entry: dict) -> dict:
    return {"email": str(entry.get("email", "")), "name": str(entry.get("name") or "")}


def message_to_summary(message: Message, zone: dt.tzinfo) -> dict:
    inbound = message.direction == "inbound"
    return {"message_id": message.id, "thread_id": message.thread_id, "inbox_id": message.inbox_id,
            "direction": message.direction, "from": {"email": message.from_email, "name": message.from_name},
            "to": [_address(a) for a in message.to_addrs or []], "cc": [_address(a) for a in message.cc_addrs or []],
            "subject": message.subject, "snippet": message.snippet, "has_attachments": message.has_attachments,
            "is_read": message.is_read, "labels": list(message.labels or []),
            "received_at": render_time(message.received_at or (message.created_at if inbound else None), zone),
            "sent_at": render_time(message.sent_at, zone), "status": message.status}


def _result(value: object) -> str:
    """One authentication result as a word, whatever shape it was recorded in."""
    if isinstance(value, dict):
        value = value.get("result")
    return str(value) if value else "none"


def authentication_of(message: Message) -> dict:
    recorded = message.authentication or {}
    return {"spf": _result(recorded.get("spf")), "dkim": _result(recorded.get("dkim")),
            "dmarc": _result(recorded.get("dmarc")), "dmarc_aligned": bool(recorded.get("dmarc_aligned", False))}


def enrichment_of(message: Message, zone: dt.tzinfo) -> dict | None:
    """What the worker found for a received message (issue 21), None until it enriched it."""
    found = message.enrichment
    if not found:
        return None
    step = found.get("next_step")
    if step and step.get("due"):
        step = {**step, "due": render_time(dt.datetime.fromisoformat(step["due"]), zone)}
    return {"phishing": found.get("phishing"), "next_step": step, "mark": found.get("mark"),
            "model": found.get("model")}


def attachment_bytes(db: Session, attachment: Attachment) -> bytes:
    """An attachment's decoded bytes (from the blob store, or its own row until the backfill moves it)."""
    return blobs.attachment_bytes(db, attachment)


def attachment_to_dict(attachment: Attachment) -> dict:
    return {"attachment_id": attachment.id, "filename": attachment.filename,
            "content_type": attachment.content_type, "size": attachment.size,
            "disposition": attachment.disposition, "content_id": attachment.content_id}


def message_to_full(message: Message, attachments: list[Attachment], zone: dt.tzinfo,
                    delivery: list[dict] | None = None, invitation: dict | None = None) -> dict:
    inbound = message.direction == "inbound"
    return {**message_to_summary(message, zone),
            "reply_to": [_address(a) for a in message.reply_to_addrs or []],
            "text_body": message.text_body, "html_body": message.html_body,
            "headers": {"Message-ID": message.message_id_header, "In-Reply-To": message.in_reply_to,
                        "References": " ".join(message.references or []), "Date": message.date_header},
            "attachments": [attachment_to_dict(a) for a in attachments],
            "authentication": authentication_of(message) if inbound else None,
            "delivery": None if inbound else [
                {**d, "last_attempt_at": render_time(d["last_attempt_at"], zone),
                 "next_attempt_at": render_time(d["next_attempt_at"], zone)} for d in delivery or []],
            "size": message.size, "parse_error": message.parse_error, "invitation": invitation,
            "enrichment": enrichment_of(message, zone) if inbound else None}


def render_full(db: Session, messages: list[Message], zone: dt.tzinfo) -> list[dict]:
    """Full messages, with their attachments' metadata fetched in one query (not their bytes)."""
    found: dict[str, list[Attachment]] = {m.id: [] for m in messages}
    if messages:
        columns = (Attachment.id, Attachment.message_id, Attachment.filename, Attachment.content_type,
                   Attachment.size, Attachment.disposition, Attachment.content_id)
        rows = db.scalars(select(Attachment).options(load_only(*columns))
                          .where(Attachment.message_id.in_(list(found))).order_by(Attachment.id))
        for attachment in rows:
            found[attachment.message_id].append(attachment)
    delivery = outbound.delivery_of(db, [m.id for m in messages if m.direction == "outbound"])
    invitations = _invitations(db, [m.id for m in messages if m.direction == "inbound"])
    return [message_to_full(m, found[m.id], zone, delivery.get(m.id), invitations.get(m.id)) for m in messages]


def _invitations(db: Session, message_ids: list[str]) -> dict[str, dict]:
    """The calendar invitation each received message carried (issue 18: workspace/imip.py links them)."""
    if not message_ids:
        return {}
    rows = db.scalars(select(CalendarInvitation).where(CalendarInvitation.message_id.in_(message_ids)))
    return {r.message_id: {"event_id": r.event_id, "method": r.method, "organizer": r.organizer} for r in rows}


def _participants(messages: list[Message]) -> list[str]:
    seen: dict[str, None] = {}
    for m in messages:
        for address in [m.from_email, *(a.get("email", "") for a in (m.to_addrs or []) + (m.cc_addrs or []))]:
            if address:
                seen.setdefault(address, None)
    return list(seen)


def _thread_labels(messages: list[Message]) -> list[str]:
    return list(dict.fromkeys(label for m in messages for label in (m.labels or [])))


def thread_to_summary(thread: Thread, messages: list[Message], zone: dt.tzinfo) -> dict:
    latest = messages[-1] if messages else None
    return {"thread_id": thread.id, "inbox_id": thread.inbox_id, "subject": thread.subject,
            "participants": _participants(messages), "labels": _thread_labels(messages),
            "message_count": thread.message_count, "unread_count": sum(1 for m in messages if not m.is_read),
            "last_message_at": render_time(thread.last_message_at, zone),
            "snippet": latest.snippet if latest else ""}


def thread_to_full(db: Session, thread: Thread, messages: list[Message], zone: dt.tzinfo) -> dict:
    return {"thread_id": thread.id, "inbox_id": thread.inbox_id, "subject": thread.subject,
            "participants": _participants(messages), "labels": _thread_labels(messages),
            "message_count": thread.message_count, "last_message_at": render_time(thread.last_message_at, zone),
            "messages": render_full(db, messages, zone)}


_SAFE_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def safe_content_type(content_type: str) -> str:
    """The attachment's type when it is a plain type/subtype, else application/octet-stream."""
    value = (content_type or "").strip().lower()
    return value if _SAFE_TYPE.match(value) else "application/octet-stream"
