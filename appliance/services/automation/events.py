"""The event table: every state change appends one, in the same transaction as the change.

Commit order (`seq`). Event ids are ULIDs made when `emit` is called, before the transaction
commits, so two transactions can commit in the opposite order of their ids; a reader paging by id
would then step over the one that committed late. Each event therefore gets an integer `seq`
that increases in commit order, and readers page by `seq`:

- `emit` and `emit_many` only validate the event and keep its row with the session. The rows are
  written when the transaction commits (a `before_commit` hook on every Session; also when a
  savepoint is released, see below), after the session's other changes are flushed: the hook
  takes the next numbers from the one-row `event_counter` table (an upsert that adds n and
  returns the new total) and inserts the rows with those numbers, then the transaction commits.
- On PostgreSQL the upsert locks the counter row until the transaction ends, so event-writing
  transactions pass that point one at a time and each commits before the next can number its
  events: seq order is commit order, and a reader that has seen seq N has seen every event below
  N that will ever exist. The lock is taken last (after the flush; nothing but the event rows is
  written after it), so it is held for one insert and the commit, and no transaction waits for
  another row while holding it (no deadlock). The price: event-writing commits are serialised
  (one WAL flush each); the inbound path stores a batch of messages per transaction, so that is
  one lock per batch. (Rejected alternative: a sequence plus "read only rows below the oldest
  running transaction's xid", which lets one long transaction anywhere stall every reader.)
- On SQLite writers are serialised by the database's write lock, which the transaction holds
  until it commits: the same statements give the same guarantee.
- A rolled-back transaction or savepoint drops the events emitted inside it (session hooks).
  Events are not visible to queries inside their own transaction before it commits.

Who (`actor`): {kind, id}. Kinds: user, agent (a token), system, smtp, worker, workflow. Callers
pass a `Principal`, an `Actor`, or an id (`usr_…` is a user, `tok_…` an agent token); without
one, the actor set for the current context with `acting_as` (the worker sets `worker`), else
`system`. What (`type`, `category`): the registry in event_types.py; an unregistered type raises.
Retention: `purge_events` deletes events older than `event_retention_days`, a batch at a time,
from the lowest seq up (the worker calls it).
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, bindparam, delete, event as sa_event, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import has_prefix, new_id
from appliance.models import Event, EventCounter
from appliance.services.automation.event_types import EVENT_TYPES, REGISTRY, UnknownEventType, lookup
from appliance.services.automation.stream import notify_committed

__all__ = ["EVENT_TYPES", "Actor", "UnknownEventType", "acting_as", "context_actor", "emit", "emit_many", "list_events",
           "list_tenant_events", "parse_types", "purge_events", "resolve_cursor", "event_to_dict", "iso"]


@dataclass(frozen=True)
class Actor:
    """Who caused an event: kind (user, agent, system, smtp, worker, workflow) and an id if any."""

    kind: str
    id: str | None = None


SYSTEM = Actor("system")
SMTP = Actor("smtp")
WORKER = Actor("worker")
_KINDS_BY_PREFIX = {"usr": "user", "tok": "agent", "wfl": "workflow"}
_acting: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("gentbox_event_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: Any) -> Iterator[None]:
    """Events emitted inside the block without an actor of their own name this one."""
    reset = _acting.set(actor_of(actor))
    try:
        yield
    finally:
        _acting.reset(reset)


def context_actor() -> Actor | None:
    """The actor set by `acting_as` for this context, if any."""
    return _acting.get()


def actor_of(value: Any) -> Actor:
    """An Actor from what callers pass: an Actor, a Principal (kind, id), an id string, or None."""
    if value is None:
        return _acting.get() or SYSTEM
    if isinstance(value, Actor):
        return value
    if isinstance(value, str):
        return Actor(_KINDS_BY_PREFIX.get(value.split("_", 1)[0], "system"), value)
    return Actor(value.kind, value.id)  # a Principal


# --- writing -----------------------------------------------------------------------------------
_PENDING = "gentbox.events.pending"  # Session.info key: [(savepoint or None, row, Event or None)]


def emit(db: Session, type_: str, *, tenant_id: str | None, inbox_id: str | None = None,
         resource_id: str | None = None, actor: Any = None,
         payload: dict[str, Any] | None = None) -> Event:
    """Append an event to the current unit of work (written, with its seq, when it commits)."""
    who = actor_of(actor)
    row = {"id": new_id("evt"), "type": type_, "category": lookup(type_).category, "tenant_id": tenant_id,
           "inbox_id": inbox_id, "resource_id": resource_id, "actor_kind": who.kind, "actor_id": who.id,
           "occurred_at": utcnow(), "payload": payload or {}}
    event = Event(**row)
    _pending(db).append((db.get_nested_transaction(), row, event))
    return event


def emit_many(db: Session, rows: Iterable[dict[str, Any]], *, actor: Any = None) -> int:
    """Append several events at once (the inbound path's batches): each row a dict with `type`,
    `tenant_id`, `inbox_id`, `resource_id`, `payload`, optionally `occurred_at`; one actor for all.
    Written with one multi-row insert at commit. Returns how many."""
    who = actor_of(actor)
    now, savepoint = utcnow(), db.get_nested_transaction()
    made = [(savepoint, {"id": new_id("evt"), "category": (REGISTRY.get(row["type"]) or lookup(row["type"])).category,
                         "tenant_id": None, "inbox_id": None, "resource_id": None, "actor_kind": who.kind,
                         "actor_id": who.id, "occurred_at": now, "payload": {}, **row}, None) for row in rows]
    _pending(db).extend(made)  # all or none: an unknown type above leaves nothing behind
    return len(made)


def _pending(db: Session) -> list:
    if db.get_transaction() is None:
        db.begin()  # a unit of work to roll back (no statement yet: SQLite takes no lock for this)
    return db.info.setdefault(_PENDING, [])


@sa_event.listens_for(Session, "before_commit")
def _write_pending(db: Session) -> None:
    """Number and insert the events kept so far. Runs before every commit, a savepoint's release
    included (simpler than telling the two apart, and a savepoint's events then live or die with
    its parent, as its other rows do)."""
    pending = db.info.get(_PENDING)
    if not pending:
        return
    db.flush()  # the rest of the unit of work first: the counter's lock is the last one taken
    conn = db.connection()
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        # PostgreSQL's read sessions: the counter's lock must last until the events are in, so
        # number and insert them in a transaction of their own (the rest was committed already).
        with conn.engine.execution_options(isolation_level="READ COMMITTED").begin() as own:
            _number_and_insert(own, pending)
    else:
        _number_and_insert(conn, pending)
    pending.clear()


def _number_and_insert(conn: Connection, pending: list) -> None:
    rows = [row for _savepoint, row, _event in pending]
    last = conn.execute(_RESERVE[conn.dialect.name], {"n": len(rows)}).scalar_one()
    for offset, (_savepoint, row, event) in enumerate(pending, start=last - len(rows) + 1):
        row["seq"] = offset
        if event is not None:
            event.seq = offset
    conn.execute(_INSERT, rows)
    notify_committed(conn, last)  # PostgreSQL: wakes the live streams when (if) this commits


def _reserve(dialect):  # noqa: ANN001, ANN202
    """The upsert that adds n to the counter and returns the new total (locking its row)."""
    table = EventCounter.__table__
    statement = dialect.insert(table).values(id=1, last_seq=bindparam("n"))
    return statement.on_conflict_do_update(index_elements=[table.c.id],
                                           set_={"last_seq": table.c.last_seq + statement.excluded.last_seq}
                                           ).returning(table.c.last_seq)


_INSERT = insert(Event.__table__)
_RESERVE = {"postgresql": _reserve(postgresql), "sqlite": _reserve(sqlite)}


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(db: Session, previous: SessionTransaction) -> None:
    """Events emitted in a transaction or savepoint that rolled back never happened."""
    pending = db.info.get(_PENDING)
    if not pending:
        return
    if previous.parent is None:
        pending.clear()
        return
    pending[:] = [entry for entry in pending if not _inside(entry[0], previous)]


def _inside(savepoint: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is outer:
            return True
        savepoint = savepoint.parent
    return False


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_at_end(db: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and db.info.get(_PENDING):  # closed without commit
        db.info[_PENDING].clear()


# --- reading -----------------------------------------------------------------------------------
def parse_types(value: str | list[str] | None, field: str = "types") -> list[str] | None:
    """A type filter ("a,b" or a list): registered types only, else 400 naming the first unknown."""
    if not value:
        return None
    wanted = [t.strip() for t in (value.split(",") if isinstance(value, str) else value) if t.strip()]
    for type_ in wanted:
        if type_ not in REGISTRY:
            raise ValidationError(f"There is no event type {type_[:64]!r}.", field=field,
                                  fix="Use the types of GET /v1/events/types/, e.g. message.received.")
    return wanted or None


_CURSOR = re.compile(r"^([0-9]{1,18}|[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26})$")


def resolve_cursor(db: Session, value: str | int | None, *, inbox_id: str | None = None,
                   tenant_id: str | None = None, field: str = "after") -> int | None:
    """A position in seq from a cursor: a seq itself ("123"), or an event id (the form clients
    used before seq): that event's seq, or, for an id not found in the scope (purged, another
    inbox's), the position of its time, the highest seq among the scope's older ids."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    if not _CURSOR.match(value):
        raise ValidationError("The cursor is neither a seq nor an event id.", field=field,
                              fix="Pass the cursor of the previous page, or the seq of the last event read.")
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, int() refuses it
        return int(value)
    scope = [Event.inbox_id == inbox_id] if inbox_id else [Event.tenant_id == tenant_id] if tenant_id else []
    if has_prefix(value, "evt"):
        found = db.scalar(select(Event.seq).where(Event.id == value, *scope))
        if found is not None:
            return found
    return db.scalar(select(func.max(Event.seq)).where(Event.id <= value, *scope)) or 0


def list_events(db: Session, *, inbox_id: str, after: str | int | None, types: list[str] | None,
                limit: int) -> list[Event]:
    """Events of one inbox in commit order (seq), strictly after the cursor."""
    query = select(Event).where(Event.inbox_id == inbox_id)
    position = resolve_cursor(db, after, inbox_id=inbox_id)
    if position is not None:
        query = query.where(Event.seq > position)
    if types:
        query = query.where(Event.type.in_(types))
    return list(db.scalars(query.order_by(Event.seq).limit(limit)))


def list_tenant_events(db: Session, tenant_id: str, *, before: str | int | None, types: list[str] | None,
                       limit: int) -> list[Event]:
    """A tenant's events, newest first (seq), strictly before the cursor (the web UI's feed)."""
    query = select(Event).where(Event.tenant_id == tenant_id)
    position = resolve_cursor(db, before, tenant_id=tenant_id, field="before")
    if position is not None:
        query = query.where(Event.seq < position)
    if types:
        query = query.where(Event.type.in_(types))
    return list(db.scalars(query.order_by(Event.seq.desc()).limit(limit)))


def purge_events(db: Session, *, retention_days: int, now: dt.datetime | None = None, batch: int = 1000) -> int:
    """Delete up to `batch` events older than the retention, from the lowest seq up; returns how
    many. Reads only the head of the seq index, so a call with nothing to purge costs one short
    range read. Call again while it returns `batch`."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    head = db.execute(select(Event.seq, Event.occurred_at).order_by(Event.seq).limit(batch)).all()
    expired = [seq for seq, occurred_at in head if occurred_at < cutoff]
    if expired:
        db.execute(delete(Event).where(Event.seq.in_(expired)))
    return len(expired)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The API's event object (contract sections 6 and 8)."""
    return {"event_id": event.id, "seq": event.seq, "type": event.type, "category": event.category,
            "inbox_id": event.inbox_id, "resource_id": event.resource_id,
            "occurred_at": iso(event.occurred_at), "actor": {"kind": event.actor_kind, "id": event.actor_id},
            "payload": event.payload}


def iso(value) -> str | None:  # noqa: ANN001
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")
