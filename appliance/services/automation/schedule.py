"""The schedule: events due at a time (anniversaries, reminders, due tasks), emitted when due.

An area plans a row by `key` (`plan`, an upsert: planning again moves it) and cancels it by key.
The worker calls `fire_due`, which emits each due row's event in the row's own transaction and
then either re-arms the row at the next due time (its `source` has a function registered with
`register_next`: yearly anniversaries, recurring events) or marks it fired. A row is claimed with
a conditional UPDATE on its `due_at`, so two workers never emit one firing twice.

Alerts with an `offset` fire before `due_at`; the delivery engine reads these rows for that
(appliance/services/automation/offsets.py), and the firing writes any offset delivery still
missing in its own transaction. The emitted event's payload is the row's, plus `due_at` and
`schedule_id`. The worker calls `fire_due` every pass (`Worker.run_once`, its serve loop, and
`gentbox worker --once`), acting as the worker.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Schedule
from appliance.services.automation import events, offsets

NextDue = Callable[[Session, Schedule], "dt.datetime | None"]
_NEXT: dict[str, NextDue] = {}


def register_next(source: str, fn: NextDue) -> None:
    """Register how rows of `source` re-arm after firing (None from fn: the row is done)."""
    _NEXT[source] = fn


def plan(db: Session, *, tenant_id: str, inbox_id: str | None, key: str, source: str, event_type: str,
         due_at: dt.datetime, resource_id: str | None = None, payload: dict[str, Any] | None = None) -> Schedule:
    """Schedule `event_type` at `due_at` under `key` (replacing what that key had planned)."""
    events.lookup(event_type)  # an unknown type fails now, not at firing time
    now = utcnow()
    row = db.scalar(select(Schedule).where(Schedule.key == key))
    if row is None:
        row = Schedule(id=new_id("sch"), key=key, created_at=now)
        db.add(row)
    row.tenant_id, row.inbox_id, row.source, row.event_type = tenant_id, inbox_id, source, event_type
    row.resource_id, row.payload, row.due_at, row.fired_at, row.updated_at = (
        resource_id, payload or {}, due_at, None, now)
    db.flush()
    return row


def cancel(db: Session, key: str) -> bool:
    """Forget what `key` planned; True when there was something."""
    return db.execute(delete(Schedule).where(Schedule.key == key)).rowcount > 0


def cancel_prefix(db: Session, prefix: str) -> int:
    """Forget every row whose key starts with `prefix` (a deleted contact's anniversaries)."""
    return db.execute(delete(Schedule).where(Schedule.key.startswith(prefix, autoescape=True))).rowcount


def due(db: Session, now: dt.datetime, *, limit: int = 100) -> list[Schedule]:
    """Rows due at `now`, oldest first."""
    return list(db.scalars(select(Schedule).where(Schedule.fired_at.is_(None), Schedule.due_at <= now)
                           .order_by(Schedule.due_at).limit(limit)))


def fire_due(store_session: Callable[[], Any], now: dt.datetime | None = None, *, limit: int = 100) -> int:
    """Emit every due row's event, one transaction per row; returns how many fired.

    `store_session` is `Store.session` (a context manager that commits)."""
    now = now or utcnow()
    with store_session() as db:
        ids = [(row.id, row.due_at) for row in due(db, now, limit=limit)]
    fired = 0
    for row_id, due_at in ids:
        with store_session() as db:
            fired += _fire(db, row_id, due_at, now)
    return fired


def _fire(db: Session, row_id: str, due_at: dt.datetime, now: dt.datetime) -> int:
    row = db.get(Schedule, row_id)
    if row is None or row.fired_at is not None or row.due_at != due_at:
        return 0  # cancelled, fired or re-planned meanwhile
    nxt = _NEXT[row.source](db, row) if row.source in _NEXT else None
    values = {"due_at": nxt, "updated_at": now} if nxt is not None else {"fired_at": now, "updated_at": now}
    claimed = db.execute(update(Schedule).where(Schedule.id == row_id, Schedule.due_at == due_at,
                                                Schedule.fired_at.is_(None)).values(**values))
    if claimed.rowcount != 1:
        db.rollback()
        return 0
    offsets.write_for_firing(db, row, due_at, now)  # offset alerts asleep through their window: late, once
    payload = {**(row.payload or {}), "due_at": due_at.isoformat(), "schedule_id": row.id}
    events.emit(db, row.event_type, tenant_id=row.tenant_id, inbox_id=row.inbox_id, resource_id=row.resource_id,
                actor=events.WORKER, payload=payload)
    return 1
