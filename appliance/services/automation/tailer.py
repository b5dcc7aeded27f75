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
from appliance.models import AlertCursor, Event

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
    for event in db.scalars(select(Event).where(Event.seq > last, Event.seq <= seqs[-1], Event.type.in_(types))
                            .order_by(Event.seq)):
        handle(event)
    return len(seqs) if advance(db, name, last, seqs[-1]) else 0
