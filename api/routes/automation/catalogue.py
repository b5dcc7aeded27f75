"""Contract section 8, the event catalogue (issue 15): public, generated from the registry of
event types. Owners and admins signed in with a session also see the admin-only types."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel

from api import references
from api.framework import PUBLIC, Ctx, endpoint
from appliance.services.automation import catalogue

bp = Blueprint("event_catalogue", __name__)


class EventTypeEntry(BaseModel):
    type: str
    category: str
    description: str
    config: dict[str, Any]
    offset_units: list[str]
    admin: bool


class CategoryEntry(BaseModel):
    category: str
    description: str
    count: int


class EventTypesAnswer(BaseModel):
    resource: str
    events: list[EventTypeEntry]
    categories: list[CategoryEntry]
    counts: dict[str, int]


def _include_admin(ctx: Ctx) -> bool:
    """Admin-only types for owners and admins with a session (never for agent tokens)."""
    return ctx.principal is not None and ctx.principal.kind == "user" and ctx.principal.is_manager


@references.extend("events")
def event_reference(ctx: Ctx) -> dict:
    """The generated /v1/events/reference/ plus how to subscribe and every event type."""
    return catalogue.reference(_include_admin(ctx))


@endpoint(bp, "/v1/events/types/", "GET", auth=PUBLIC, tag="events", response=EventTypesAnswer,
          summary="Every event type by category, with counts")
def event_types(ctx: Ctx) -> dict:
    return catalogue.event_types(_include_admin(ctx))
