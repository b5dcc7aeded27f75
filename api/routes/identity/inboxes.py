"""Contract section 3: inboxes (user auth)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, Reply, StrictModel, endpoint
from api.schemas import ID_CURSOR
from appliance.services.identity import inboxes

bp = Blueprint("inboxes", __name__)


class InboxCreate(StrictModel):
    address: str = Field(max_length=320)
    display_name: str = Field("", max_length=200)
    default_timezone: str | None = Field(None, max_length=64)


class InboxUpdate(StrictModel):
    display_name: str | None = Field(None, max_length=200)
    default_timezone: str | None = Field(None, max_length=64)
    status: Literal["active", "paused"] | None = None


class InboxQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=100, pattern=ID_CURSOR)


class InboxObject(BaseModel):
    inbox_id: str
    address: str
    display_name: str
    default_timezone: str | None
    status: str
    created_at: str
    message_count: int
    unread_count: int


class InboxList(BaseModel):
    results: list[InboxObject]
    cursor: str | None


def _render(ctx: Ctx, inbox) -> dict:  # noqa: ANN001
    total, unread = inboxes.counts(ctx.db, [inbox.id]).get(inbox.id, (0, 0))
    return inboxes.inbox_to_dict(inbox, total, unread)


@endpoint(bp, "/v1/inboxes/", "POST", auth=USER, tag="inboxes", body=InboxCreate, response=InboxObject,
          status=201, summary="Create an inbox on a verified domain")
def create_inbox(ctx: Ctx) -> dict:
    b = ctx.body
    return _render(ctx, inboxes.create_inbox(ctx.db, ctx.principal, b.address, b.display_name, b.default_timezone))


@endpoint(bp, "/v1/inboxes/", "GET", auth=USER, tag="inboxes", query=InboxQuery, response=InboxList,
          summary="The tenant's inboxes")
def list_inboxes(ctx: Ctx) -> dict:
    q = ctx.query
    rows = inboxes.list_inboxes(ctx.db, ctx.principal, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    counts = inboxes.counts(ctx.db, [i.id for i in page])
    return {"results": [inboxes.inbox_to_dict(i, *counts.get(i.id, (0, 0))) for i in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/inboxes/<inbox_id>/", "GET", auth=USER, tag="inboxes", response=InboxObject,
          summary="One inbox with its message counts")
def get_inbox(ctx: Ctx, inbox_id: str) -> dict:
    return _render(ctx, inboxes.get_inbox(ctx.db, ctx.principal, inbox_id))


@endpoint(bp, "/v1/inboxes/<inbox_id>/", "PATCH", auth=USER, tag="inboxes", body=InboxUpdate,
          response=InboxObject, summary="Rename, change time zone, pause or resume an inbox")
def update_inbox(ctx: Ctx, inbox_id: str) -> dict:
    changes = ctx.body.model_dump(exclude_unset=True)
    return _render(ctx, inboxes.update_inbox(ctx.db, ctx.principal, inbox_id, changes))


@endpoint(bp, "/v1/inboxes/<inbox_id>/", "DELETE", auth=USER, tag="inboxes", status=204,
          summary="Delete an inbox; its tokens stop working at once")
def delete_inbox(ctx: Ctx, inbox_id: str) -> Reply:
    inboxes.delete_inbox(ctx.db, ctx.principal, inbox_id)
    return Reply(204)
