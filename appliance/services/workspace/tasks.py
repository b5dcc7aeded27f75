"""Tasks (contract section 12): an inbox's to-dos, with a due time, a priority, a status and a link.

Tasks are written by people and agents through the API and the web UI, and by task alerts
(appliance/services/automation/alerts.py: `deliver_task`). Due times go through
appliance/timeinput.py (so `tomorrow 10am` means 10:00 in the inbox's zone) and are stored in
UTC; answers render them in the inbox's zone and name it. An open task with a due time in the
future has a `task.due` event planned at that time (appliance/services/automation/schedule.py);
completing, cancelling or deleting it (or clearing `due`) cancels that.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from appliance import timeinput
from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import has_prefix, new_id
from appliance.models import Base, Inbox, Task
from appliance.services import tenancy
from appliance.services.automation import events, schedule
from appliance.services.identity.auth import Principal, inbox_for, may_use_inbox

STATUSES = ("needs_action", "in_progress", "completed", "cancelled")
OPEN_STATUSES = ("needs_action", "in_progress")
# related.type -> (id prefix, the table that holds it). A table another area has not built yet is
# skipped: the id's shape is checked, its existence once the table exists.
RELATED = {"message": ("msg", "messages"), "thread": ("thr", "threads"), "contact": ("ctc", "contacts"),
           "event": ("cal", "calendar_events")}
FIELDS = ("summary", "description", "due", "priority", "status", "related")
_NOT_FOUND = "No such task."


def _model(table: str) -> type | None:
    for mapper in Base.registry.mappers:
        if mapper.local_table.name == table:
            return mapper.class_
    return None


def _due_key(task_id: str) -> str:
    return f"task:{task_id}:due"


# --- validation --------------------------------------------------------------------------------
def _summary(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("summary: a task needs a summary", field="summary", fix="Say what is to be done.")
    if len(value) > 500:
        raise ValidationError("summary: at most 500 characters", field="summary")
    return value.strip()


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 20_000:
        raise ValidationError("description: text of at most 20000 characters", field="description")
    return value


def _priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9:
        raise ValidationError("priority: 1 (highest) to 9 (lowest), or null", field="priority",
                              fix="Use 1-9 as iCalendar does: 1 highest, 5 medium, 9 lowest.")
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ValidationError(f"status: one of {', '.join(STATUSES)}", field="status")
    return value


def _due(value: Any, inbox: Inbox, now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    return timeinput.parse_instant(value, zone=inbox.default_timezone, now=now, field="due").at


def _related(db: Session, value: Any, inbox: Inbox) -> tuple[str | None, str | None]:
    """The linked resource: its type and id, checked to exist in the task's inbox."""
    if value is None:
        return None, None
    kind, rid = (value.get("type"), value.get("id")) if isinstance(value, dict) else (None, None)
    if kind not in RELATED:
        raise ValidationError(f"related.type: one of {', '.join(RELATED)}", field="related.type")
    prefix, table = RELATED[kind]
    if not has_prefix(rid, prefix):
        raise ValidationError(f"related.id: a {kind} id ({prefix}_…)", field="related.id")
    model = _model(table)
    if model is not None:
        where = (model.inbox_id == inbox.id,) if "inbox_id" in model.__table__.c else ()
        key = inspect(model).primary_key[0]
        # Another tenant's or inbox's row reads exactly like a missing one: nothing to probe.
        if tenancy.find_owned(db, model, inbox.tenant_id, key == rid, *where) is None:
            raise ValidationError(f"related.id: no {kind} {rid} in this inbox", field="related.id",
                                  fix=f"Link a {kind} of the task's own inbox.")
    return kind, rid


# --- reading -----------------------------------------------------------------------------------
def _usable(principal: Principal):  # noqa: ANN202 - a SQL condition on Task
    inboxes = select(Inbox.id).where(Inbox.tenant_id == principal.tenant_id, Inbox.status != "deleted",
                                     may_use_inbox(principal))
    return Task.inbox_id.in_(inboxes)


def get_task(db: Session, principal: Principal, task_id: str, inbox_id: str | None = None) -> Task:
    """One task the caller may see (of the inbox named, when one is); 404 for any other."""
    where = (_usable(principal),) + ((Task.inbox_id == inbox_id,) if inbox_id else ())
    return tenancy.get_owned(db, Task, task_id, principal.tenant_id, where=where, message=_NOT_FOUND)


def list_tasks(db: Session, principal: Principal, inbox_id: str | None = None, *, status: str | None = None,
               after: str | None = None, limit: int = 50) -> list[Task]:
    """The caller's inbox's tasks (a session naming none: every inbox it may use), oldest first."""
    query = tenancy.owned(select(Task), Task, principal.tenant_id).where(_usable(principal))
    if inbox_id is not None or principal.own_inbox_id is not None:
        query = query.where(Task.inbox_id == inbox_for(db, principal, inbox_id).id)
    if status is not None:
        query = query.where(Task.status == _status(status))
    if after:
        query = query.where(Task.id > after)
    return list(db.scalars(query.order_by(Task.id).limit(limit)))


def open_tasks(db: Session, inbox_id: str, *, until: dt.datetime | None = None) -> list[Task]:
    """The inbox's open tasks (needs_action, in_progress), undated or due before `until`."""
    query = select(Task).where(Task.inbox_id == inbox_id, Task.status.in_(OPEN_STATUSES))
    if until is not None:
        query = query.where(Task.due.is_(None) | (Task.due < until))
    return list(db.scalars(query.order_by(Task.id)))


def task_to_dict(task: Task, zone: str | None) -> dict:
    """The API's task object: times in the inbox's zone (`time_zone` names it)."""
    return {"task_id": task.id, "inbox_id": task.inbox_id, "summary": task.summary,
            "description": task.description or "", "due": timeinput.render(task.due, zone),
            "time_zone": zone or "UTC", "priority": task.priority, "status": task.status,
            "related": {"type": task.related_type, "id": task.related_id} if task.related_type else None,
            "completed_at": timeinput.render(task.completed_at, zone),
            "source": ({"alert_id": task.source_alert_id, "event_id": task.source_event_id}
                       if task.source_alert_id else None),
            "created_at": timeinput.render(task.created_at, zone),
            "updated_at": timeinput.render(task.updated_at, zone)}


def zones_of(db: Session, tasks: list[Task]) -> dict[str, str | None]:
    """Each task's inbox zone, in one query (a session's list spans several inboxes)."""
    ids = {t.inbox_id for t in tasks}
    if not ids:
        return {}
    return dict(db.execute(select(Inbox.id, Inbox.default_timezone).where(Inbox.id.in_(ids))).all())


# --- writing -----------------------------------------------------------------------------------
def create_task(db: Session, principal: Principal, inbox_id: str | None, data: dict[str, Any]) -> Task:
    """A new task in the caller's inbox (`data`: the contract's fields; summary required)."""
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: not a task field", field=sorted(unknown)[0])
    inbox = inbox_for(db, principal, inbox_id)
    now = utcnow()
    task = Task(id=new_id("tsk"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, created_at=now, updated_at=now,
                summary=_summary(data.get("summary")), description=_description(data.get("description")),
                due=_due(data.get("due"), inbox, now), priority=_priority(data.get("priority")),
                status=_status(data.get("status") or "needs_action"))
    task.related_type, task.related_id = _related(db, data.get("related"), inbox)
    task.completed_at = now if task.status == "completed" else None
    db.add(task)
    db.flush()
    _plan(db, task, now)
    _announce(db, task, "task.created", principal)
    return task


def update_task(db: Session, principal: Principal, task_id: str, inbox_id: str | None,
                changes: dict[str, Any]) -> Task:
    """Change the fields named in `changes` (None clears due, priority, related)."""
    task = get_task(db, principal, task_id, inbox_id)
    inbox = db.get(Inbox, task.inbox_id)
    now, was = utcnow(), task.status
    for name, value in changes.items():
        _apply(db, task, inbox, name, value, now)
    if task.status == "completed" and was != "completed":
        task.completed_at = now
    elif task.status != "completed":
        task.completed_at = None
    task.updated_at = now
    db.flush()
    _plan(db, task, now)
    done = task.status == "completed" and was != "completed"
    _announce(db, task, "task.completed" if done else "task.updated", principal, {"changed": sorted(changes)})
    return task


def _apply(db: Session, task: Task, inbox: Inbox, name: str, value: Any, now: dt.datetime) -> None:
    if name == "summary":
        task.summary = _summary(value)
    elif name == "description":
        task.description = _description(value)
    elif name == "due":
        task.due = _due(value, inbox, now)
    elif name == "priority":
        task.priority = _priority(value)
    elif name == "status":
        task.status = _status(value)
    elif name == "related":
        task.related_type, task.related_id = _related(db, value, inbox)
    else:
        raise ValidationError(f"{name}: not a task field", field=name)


def delete_task(db: Session, principal: Principal, task_id: str, inbox_id: str | None = None) -> None:
    """Delete a task and what it had planned."""
    task = get_task(db, principal, task_id, inbox_id)
    schedule.cancel(db, _due_key(task.id))
    # The activity projector reads the event after the row is gone: it says what the task was about.
    _announce(db, task, "task.deleted", principal, {"related": {"type": task.related_type, "id": task.related_id}})
    db.delete(task)


def _plan(db: Session, task: Task, now: dt.datetime) -> None:
    """A `task.due` event at the due time of an open task still ahead; none otherwise."""
    if task.due is None or task.status not in OPEN_STATUSES or task.due <= now:
        schedule.cancel(db, _due_key(task.id))
        return
    schedule.plan(db, tenant_id=task.tenant_id, inbox_id=task.inbox_id, key=_due_key(task.id), source="task",
                  event_type="task.due", due_at=task.due, resource_id=task.id,
                  payload={"task_id": task.id, "summary": task.summary})


def _announce(db: Session, task: Task, type_: str, actor: Any, extra: dict | None = None) -> None:
    events.emit(db, type_, tenant_id=task.tenant_id, inbox_id=task.inbox_id, resource_id=task.id, actor=actor,
                payload={"task_id": task.id, "summary": task.summary, "status": task.status,
                         "priority": task.priority, "due": task.due.isoformat() if task.due else None,
                         **(extra or {})})
