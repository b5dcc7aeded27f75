"""Alert offsets: a scheduled event delivered `offset` before it is due (docs/events.md).

A scheduled event (an anniversary, a reminder) is a `schedules` row until the worker's scheduler
fires it at `due_at` (schedule.fire_due). An alert with an `offset` must get it earlier, before
the event exists, so its deliveries are made from the row, not from the event:

- `scan` (the delivery engine, each poll) writes a `webhook_deliveries` row for every enabled
  offset alert and every unfired schedule row of its inbox and types whose `due_at - offset` has
  passed (and whose `due_at` is not before the alert was made). The row names the schedule row
  and that due time (unique per alert, schedule row and due time) and carries the event it sends
  (`data`: the event as it will be emitted, with `offset` in its payload, event id
  `ofs_<hash of row and due time>`, no seq). A NOT EXISTS on that triple keeps the scan to new work.
- `write_for_firing` does the same for one row inside the transaction that fires it, so an
  offset alert whose window the engine slept through still gets the firing (late, once): every
  firing's offset deliveries exist at the latest when its event does.
- The fired event carries `schedule_id` in its payload; the tailer skips offset alerts for such
  events (`skips`): they got it early. Events of the same types emitted outside the schedule
  (no `schedule_id`) go to them as to any alert.

Inserts ignore conflicts, so two engines, or the scan and the firing, never make two rows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.ids import new_id
from appliance.models import Alert, Event, Schedule, WebhookDelivery
from appliance.models.alerts import webhook_msg_id
from appliance.services.automation import alerts as alerts_service
from appliance.services.automation import events
from appliance.services.automation.event_types import lookup

SCAN_LIMIT = 200  # schedule rows read per alert and scan
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}


def offset_of(alert: Alert) -> dt.timedelta | None:
    """The alert's offset as a duration, None when it has none."""
    if alert.offset_value is None or alert.offset_unit not in _UNITS:
        return None
    return dt.timedelta(seconds=alert.offset_value * _UNITS[alert.offset_unit])


def skips(alert: Alert, event: Event) -> bool:
    """Does the tailer leave this event out for the alert? A fired scheduled event, to an offset
    alert (which got it `offset` before it was due)."""
    return alert.offset_value is not None and "schedule_id" in (event.payload or {})


def firing_id(schedule_id: str, due_at: dt.datetime) -> str:
    """The event id an offset delivery sends for one firing (stable: the same row and due time
    give the same id, so the same `webhook-id`)."""
    digest = hashlib.sha256(f"{schedule_id}|{due_at.astimezone(dt.timezone.utc).isoformat()}".encode()).hexdigest()
    return "ofs_" + digest[:32]


def scan(db: Session, now: dt.datetime) -> int:
    """Write the offset deliveries that are due by now, in the caller's transaction; returns how many."""
    made = 0
    for alert in db.scalars(select(Alert).where(Alert.enabled.is_(True), Alert.offset_value.is_not(None))):
        delta = offset_of(alert)
        if delta is None or not alert.events:
            continue
        done = exists().where(WebhookDelivery.alert_id == alert.id, WebhookDelivery.schedule_id == Schedule.id,
                              WebhookDelivery.schedule_due_at == Schedule.due_at)
        rows = db.scalars(select(Schedule).where(
            Schedule.tenant_id == alert.tenant_id, Schedule.inbox_id == alert.inbox_id,
            Schedule.event_type.in_(list(alert.events)), Schedule.fired_at.is_(None),
            Schedule.due_at <= now + delta, Schedule.due_at >= alert.created_at, ~done)
            .order_by(Schedule.due_at).limit(SCAN_LIMIT)).all()
        made += _insert(db, [_row(alert, row, row.due_at, now) for row in rows
                             if alerts_service.matches(alert, _event(row, row.due_at, alert))])
    return made


def write_for_firing(db: Session, row: Schedule, due_at: dt.datetime, now: dt.datetime) -> int:
    """The offset deliveries of one firing (row at due_at) not made yet, in the firing's transaction."""
    query = select(Alert).where(Alert.enabled.is_(True), Alert.offset_value.is_not(None),
                                Alert.tenant_id == row.tenant_id, Alert.inbox_id == row.inbox_id,
                                Alert.created_at <= due_at)
    found = []
    for alert in db.scalars(query):
        if offset_of(alert) is not None and alerts_service.matches(alert, _event(row, due_at, alert)):
            found.append(_row(alert, row, due_at, now))
    return _insert(db, found)


def _insert(db: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    insert = _INSERT[db.get_bind().dialect.name](WebhookDelivery.__table__)
    return db.execute(insert.on_conflict_do_nothing(), rows).rowcount or 0


def _payload(row: Schedule, due_at: dt.datetime, alert: Alert) -> dict[str, Any]:
    """The payload fire_due gives the event, plus the offset it was delivered at."""
    return {**(row.payload or {}), "due_at": due_at.isoformat(), "schedule_id": row.id,
            "offset": {"value": alert.offset_value, "unit": alert.offset_unit}}


def _event(row: Schedule, due_at: dt.datetime, alert: Alert) -> Event:
    """The event this firing sends to an offset alert (never stored in the events table)."""
    return Event(id=firing_id(row.id, due_at), seq=None, type=row.event_type, category=lookup(row.event_type).category,
                 tenant_id=row.tenant_id, inbox_id=row.inbox_id, resource_id=row.resource_id,
                 actor_kind=events.WORKER.kind, actor_id=None, occurred_at=due_at - offset_of(alert),
                 payload=_payload(row, due_at, alert))


def _row(alert: Alert, row: Schedule, due_at: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    event = _event(row, due_at, alert)
    return {"id": new_id("dlv"), "tenant_id": alert.tenant_id, "alert_id": alert.id, "event_id": event.id,
            "event_seq": None, "webhook_id": webhook_msg_id(event.id, alert.id), "attempt": 0, "status": "pending",
            "next_attempt_at": now, "schedule_id": row.id, "schedule_due_at": due_at,
            "data": events.event_to_dict(event), "created_at": now, "updated_at": now}


def event_of(data: dict[str, Any], tenant_id: str) -> Event:
    """A transient Event from a delivery's `data` (a task alert's offset delivery renders it)."""
    return Event(id=data["event_id"], seq=None, type=data["type"], category=data.get("category"), tenant_id=tenant_id,
                 inbox_id=data.get("inbox_id"), resource_id=data.get("resource_id"),
                 actor_kind=(data.get("actor") or {}).get("kind"), actor_id=None, payload=data.get("payload") or {})
