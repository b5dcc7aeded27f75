"""Contract section 15: the activity timeline and the relationship graph (issue 21 points 1, 2).

Both are read-only projections the worker keeps from the event table (appliance/services/
intelligence/activity.py and relationships.py; docs/activity.md); a request reads a few indexed
rows and never scans mail.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import Ctx, StrictModel, endpoint, scope
from appliance.services.intelligence import activity, relationships

bp = Blueprint("activity", __name__)
READ = scope("context:read")


class ActivityQuery(StrictModel):
    contact_id: str | None = Field(None, min_length=1, max_length=40, description="The contact (ctc_…): all its addresses.")
    address: str | None = Field(None, min_length=3, max_length=320, description="Or one address.")
    cursor: str | None = Field(None, max_length=80, pattern=r"^\d{1,19}\.act_[0-9A-HJKMNP-TV-Z]{26}$",
                               description="The previous page's cursor.")
    since: str | None = Field(None, max_length=200, description="Only activity at or after this time (ISO 8601 "
                                                                "or a phrase such as '7 days ago'; see docs/time.md).")
    limit: int = Field(50, ge=1, le=200)


class ActivityObject(BaseModel):
    id: str
    inbox_id: str
    contact_address: str
    contact_id: str | None
    type: str = Field(description="message.sent/received/delivered/bounced, calendar_event.created, task.*, "
                                  "approval.*, note.created")
    resource_id: str | None
    participants: list[str]
    summary: str
    occurred_at: str
    metadata: dict[str, Any]


class ActivityPage(BaseModel):
    events: list[ActivityObject]
    cursor: str | None = Field(description="Pass it back for the next page; null: this was the last one.")


class GraphQuery(StrictModel):
    limit: int = Field(50, ge=1, le=500, description="How many of the strongest correspondents.")


class Node(BaseModel):
    address: str
    contact_id: str | None
    name: str
    strength: float = Field(description="0..1: S/(S+4), S the messages' weights halving every 30 days "
                                        "(docs/activity.md).")
    inbound_count: int
    outbound_count: int
    last_inbound_at: str | None
    last_outbound_at: str | None


class Edge(BaseModel):
    source: str
    target: str
    weight: int = Field(description="From the inbox: messages exchanged; between two people: threads shared.")


class Graph(BaseModel):
    nodes: list[Node]
    edges: list[Edge]


@endpoint(bp, "/v1/activity/", "GET", auth=READ, tag="activity", query=ActivityQuery, response=ActivityPage,
          summary="One contact's history in the inbox (mail, calendar, tasks, approvals, notes), oldest first")
def list_activity(ctx: Ctx) -> dict:
    q = ctx.query
    return activity.list_activity(ctx.db, ctx.principal, ctx.inbox_id, contact_id=q.contact_id, address=q.address,
                                  cursor=q.cursor, since=q.since, limit=q.limit)


@endpoint(bp, "/v1/relationships/", "GET", auth=READ, tag="relationships", query=GraphQuery, response=Graph,
          summary="The inbox's strongest correspondents and the threads they share")
def list_relationships(ctx: Ctx) -> dict:
    return relationships.list_relationships(ctx.db, ctx.principal, ctx.inbox_id, limit=ctx.query.limit)


@endpoint(bp, "/v1/relationships/<address>/", "GET", auth=READ, tag="relationships", response=Graph,
          summary="One person and the people they share most threads with")
def get_relationship(ctx: Ctx, address: str) -> dict:
    return relationships.person_graph(ctx.db, ctx.principal, ctx.inbox_id, address)
