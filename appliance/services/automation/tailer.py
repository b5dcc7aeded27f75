"""Readers of the event table that must see every event once: the alerts' delivery engine, the
out-of-office reply, the calendar's invitation reader (and, as they land, workflows and the
activity projector).

Each reader has a named row in `alert_cursors` holding the last `seq` it handled. Events carry a
commit-ordered `seq` (docs/events.md), so reading `seq > last` in order never skips one. A
reader handles a batch and moves its cursor in the same transaction, with a conditional UPDATE
(`last_seq = <what it read>`): when two workers read the same batch, one moves the cursor and
the other's transaction is rolled back, so an event's effects are written once.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.models import AlertCursor, Event, Inbox, Message, Tenant

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def position(db: Session, name: str) -> int:
    """The reader's cursor, made at 0 the first time; on PostgreSQL locked until the caller's
    commit (one reader at a time; the other waits, then reads the new position)."""
    query = select(AlertCursor.last_seq).where(AlertCursor.name == name)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    found = db.scalar(query)
    if found is None:
        insert = _INSERT[db.get_bind().dialect.name](AlertCursor.__table__)
        db.execute(insert.values(name=name, last_seq=0, updated_at=utcnow()).on_conflict_do_nothing())
        found = db.scalar(query)
    return found


def advance(db: Session, name: str, last: int, to: int) -> bool:
    """Move the cursor from `last` to `to`; False (and the caller's work rolled back) when another
    reader moved it first."""
    moved = db.execute(update(AlertCursor).where(AlertCursor.name == name, AlertCursor.last_seq == last)
                       .values(last_seq=to, updated_at=utcnow()))
    if moved.rowcount != 1:
        db.rollback()
        return False
    return True


def tail(db: Session, name: str, handle: Callable[[Event], None], *, types: tuple[str, ...], batch: int) -> int:
    """Pass each of the next `batch` events of `types` to `handle` and move the cursor past every
    event read, in the caller's transaction; returns how many events were read (call again while
    it returns `batch`)."""
    last = position(db, name)
    seqs = list(db.scalars(select(Event.seq).where(Event.seq > last).order_by(Event.seq).limit(batch)))
    if not seqs:
        return 0
    read = list(db.scalars(select(Event).where(Event.seq > last, Event.seq <= seqs[-1], Event.type.in_(types))
                           .order_by(Event.seq)))
    held = _hold(db, read)  # noqa: F841 - kept alive until every event is handled
    for event in read:
        handle(event)
    return len(seqs) if advance(db, name, last, seqs[-1]) else 0


def _hold(db: Session, read: list[Event]) -> list:
    """The messages, inboxes and tenants the events name, loaded a query each and held for the
    batch: the readers' `db.get(Message | Inbox | Tenant, ...)` per event then find them in the
    session (which keeps rows only weakly) instead of running one query each."""
    held: list = []
    for model, ids in ((Message, {e.resource_id for e in read if e.resource_id and e.type.startswith("message.")}),
                       (Inbox, {e.inbox_id for e in read if e.inbox_id}),
                       (Tenant, {e.tenant_id for e in read if e.tenant_id})):
        if ids:
            held += db.scalars(select(model).where(model.id.in_(ids)))
    return held
