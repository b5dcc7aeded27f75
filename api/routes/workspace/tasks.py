"""Contract section 12, tasks and the agenda (issue 18).

Tasks belong to one inbox: agent tokens act on their own inbox's, sessions name the inbox
(inbox_id). Times (`due`, and the agenda's `from`/`to`) go through appliance/timeinput.py:
ISO 8601, `tomorrow 10am`, `in 2 hours`; naive values mean the inbox's zone, and answers are in
that zone with `time_zone` naming it. The rules live in appliance/services/workspace/.
"""
from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.workspace import agenda, tasks

bp = Blueprint("tasks", __name__)
READ, WRITE = scope("task:read"), scope("task:write")
AGENDA = scope("task:read", "calendar:read")
TASK_CURSOR = r"^tsk_[0-9A-HJKMNP-TV-Z]{26}$"
Status = Literal["needs_action", "in_progress", "completed", "cancelled"]
DUE = ("When it is due: ISO 8601 (naive: the inbox's zone), a phrase such as 'tomorrow 10am' or "
       "'next Monday 9:00', or 'in 2 hours'; null for none. See docs/time.md.")


class Related(StrictModel):
    """Both fields are required; the service names a missing one (after the schema's type checks)."""

    type: Literal["message", "thread", "contact", "event"] | None = None
    id: str | None = Field(None, min_length=1, max_length=40, description="msg_, thr_, ctc_ or cal_ id in the same inbox.")


class TaskCreate(StrictModel):
    summary: PlainText = Field(min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})
    due: PlainText | None = Field(None, max_length=200, description=DUE)
    priority: int | None = Field(None, ge=1, le=9, description="1 highest, 5 medium, 9 lowest (iCalendar).")
    status: Status = "needs_action"
    related: Related | None = None


class TaskUpdate(StrictModel):
    summary: PlainText | None = Field(None, min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})
    due: PlainText | None = Field(None, max_length=200, description=DUE)
    priority: int | None = Field(None, ge=1, le=9)
    status: Status | None = None
    related: Related | None = None


class TaskQuery(StrictModel):
    status: Status | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=TASK_CURSOR)


class TaskObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str
    inbox_id: str
    summary: str
    description: str
    due: str | None = Field(description="In the inbox's zone, with its offset.")
    time_zone: str = Field(description="The IANA zone the times are rendered in (the inbox's).")
    priority: int | None
    status: Status
    related: dict | None
    completed_at: str | None = Field(description="Set when the status becomes completed; cleared when it leaves it.")
    source: dict | None = Field(description="{alert_id, event_id} for a task a task alert created.")
    created_at: str
    updated_at: str


class TaskList(BaseModel):
    results: list[TaskObject]
    cursor: str | None


class AgendaQuery(StrictModel):
    from_: str | None = Field(None, alias="from", max_length=200,
                              description="Dated items at or after this time (pending ones due earlier stay).")
    to: str | None = Field(None, max_length=200, description="Dated items before this time.")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=400, pattern=r"^[A-Za-z0-9_-]+$")


class AgendaItem(BaseModel):
    kind: str = Field(description="task, missed_reply, and as the areas register them event, assignment, "
                                  "mention, share.")
    id: str
    title: str
    at: str | None = Field(description="When it is due or happens, in the inbox's zone; null: undated.")
    pending: bool = Field(description="It needs the inbox's attention (an open task, a reply owed, …).")
    resource: dict[str, Any]


class AgendaPage(BaseModel):
    items: list[AgendaItem]
    cursor: str | None


def _task(ctx: Ctx, task) -> dict:  # noqa: ANN001
    return tasks.task_to_dict(task, tasks.zones_of(ctx.db, [task]).get(task.inbox_id))


@endpoint(bp, "/v1/tasks/", "POST", auth=WRITE, tag="tasks", body=TaskCreate, response=TaskObject, status=201,
          summary="Create a task in the inbox")
def create_task(ctx: Ctx) -> dict:
    data = ctx.body.model_dump(exclude={"inbox_id"}, exclude_unset=True)
    return _task(ctx, tasks.create_task(ctx.db, ctx.principal, ctx.inbox_id, data))


@endpoint(bp, "/v1/tasks/", "GET", auth=READ, tag="tasks", query=TaskQuery, response=TaskList,
          summary="The inbox's tasks, oldest first")
def list_tasks(ctx: Ctx) -> dict:
    q = ctx.query
    rows = tasks.list_tasks(ctx.db, ctx.principal, ctx.inbox_id, status=q.status, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    zones = tasks.zones_of(ctx.db, page)
    return {"results": [tasks.task_to_dict(t, zones.get(t.inbox_id)) for t in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/tasks/<task_id>/", "GET", auth=READ, tag="tasks", response=TaskObject, summary="One task")
def get_task(ctx: Ctx, task_id: str) -> dict:
    return _task(ctx, tasks.get_task(ctx.db, ctx.principal, task_id, ctx.inbox_id))


@endpoint(bp, "/v1/tasks/<task_id>/", "PATCH", auth=WRITE, tag="tasks", body=TaskUpdate, response=TaskObject,
          summary="Change a task; null clears due, priority or related; completed sets completed_at")
def update_task(ctx: Ctx, task_id: str) -> dict:
    changes = ctx.body.model_dump(exclude={"inbox_id"}, exclude_unset=True)
    return _task(ctx, tasks.update_task(ctx.db, ctx.principal, task_id, ctx.inbox_id, changes))


@endpoint(bp, "/v1/tasks/<task_id>/", "DELETE", auth=WRITE, tag="tasks", status=204, summary="Delete a task")
def delete_task(ctx: Ctx, task_id: str) -> Reply:
    tasks.delete_task(ctx.db, ctx.principal, task_id, ctx.inbox_id)
    return Reply(204)


@endpoint(bp, "/v1/agenda/", "GET", auth=AGENDA, tag="agenda", query=AgendaQuery, response=AgendaPage,
          summary="What needs attention: undated pending items first, then by time (tasks, missed replies, …)")
def get_agenda(ctx: Ctx) -> dict:
    q = ctx.query
    return agenda.agenda(ctx.db, ctx.principal, ctx.inbox_id, frm=q.from_, to=q.to, cursor=q.cursor, limit=q.limit)
