"""Contract section 8, the event catalogue (issue 15): public, generated from the registry of
event types. Owners and admins signed in with a session also see the admin-only types."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel

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


class EventReference(BaseModel):
    version: str
    resource: str
    payload: dict[str, Any]
    fields: list[dict[str, str]]
    builder: dict[str, str]
    events: list[EventTypeEntry]
    categories: list[CategoryEntry]


def _include_admin(ctx: Ctx) -> bool:
    """Admin-only types for owners and admins with a session (never for agent tokens)."""
    return ctx.principal is not None and ctx.principal.kind == "user" and ctx.principal.is_manager


@endpoint(bp, "/v1/events/reference/", "GET", auth=PUBLIC, tag="events", response=EventReference,
          summary="How to read and subscribe to events, and every event type")
def event_reference(ctx: Ctx) -> dict:
    return catalogue.reference(_include_admin(ctx))


@endpoint(bp, "/v1/events/types/", "GET", auth=PUBLIC, tag="events", response=EventTypesAnswer,
          summary="Every event type by category, with counts")
def event_types(ctx: Ctx) -> dict:
    return catalogue.event_types(_include_admin(ctx))
