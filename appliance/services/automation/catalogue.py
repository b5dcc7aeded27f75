"""The public event catalogue (contract section 8): `GET /v1/events/reference/` and
`GET /v1/events/types/`, generated from the one registry in event_types.py.

Admin-only types (a tenant's domains, users, the waitlist) are listed only for owners and admins
signed in with a session; everyone else, agents included, sees the others.
"""
from __future__ import annotations

from typing import Any

from appliance.services.automation.event_types import CATEGORIES, REGISTRY, EventType

VERSION = "1"
# The event object's fields, as GET /v1/events/ and webhook `data` carry them.
FIELDS = (
    ("event_id", "string", "The event's id (evt_), unique."),
    ("seq", "integer", "Increases in commit order: page with after=<seq>, never missing an event."),
    ("type", "string", "The event type, e.g. message.received."),
    ("category", "string", "The type's category, e.g. messages."),
    ("inbox_id", "string|null", "The inbox it happened in; null for tenant-wide events."),
    ("resource_id", "string|null", "What changed: a message, domain, token, alert... id."),
    ("occurred_at", "string", "ISO 8601 UTC time of the change."),
    ("actor", "object", "Who caused it: {kind: user/agent/system/smtp/worker/workflow, id}."),
    ("payload", "object", "Type-specific fields; an alert's filter matches these."),
)


def _entry(t: EventType) -> dict[str, Any]:
    return {"type": t.type, "category": t.category, "description": t.description, "config": dict(t.config),
            "offset_units": list(t.offset_units), "admin": t.admin}


def visible_types(include_admin: bool) -> list[EventType]:
    """The registered types, admin-only ones only when asked for (owners and admins)."""
    return [t for t in REGISTRY.values() if include_admin or not t.admin]


def _categories(types: list[EventType]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for t in types:
        counts[t.category] = counts.get(t.category, 0) + 1
    return [{"category": name, "description": CATEGORIES[name], "count": counts[name]}
            for name in CATEGORIES if name in counts]


def event_types(include_admin: bool) -> dict[str, Any]:
    """`GET /v1/events/types/`: the types and their categories, with counts."""
    types = visible_types(include_admin)
    categories = _categories(types)
    return {"resource": "event_types", "events": [_entry(t) for t in types], "categories": categories,
            "counts": {"events": len(types), "categories": len(categories)}}


def reference(include_admin: bool) -> dict[str, Any]:
    """`GET /v1/events/reference/`: how to read and subscribe to events, and every type."""
    types = visible_types(include_admin)
    example = types[0].type if types else "message.received"
    return {
        "version": VERSION, "resource": "events",
        "payload": {
            "list_events": {"method": "GET", "path": "/v1/events/", "scope": "email:read",
                            "query": {"after": "the cursor (seq) of the last event read", "types": example,
                                      "limit": 50}},
            "subscribe_alert": {"method": "POST", "path": "/v1/alerts/", "scope": "alerts:write",
                                "body": {"events": [example],
                                         "delivery": {"type": "webhook", "target": "https://example.com/hooks"},
                                         "filter": {}, "retries": 3, "backoff": "exponential"}},
        },
        "fields": [{"name": n, "type": kind, "required": True, "description": d} for n, kind, d in FIELDS],
        "builder": {"group_field": "category", "value_field": "type"},
        "events": [_entry(t) for t in types],
        "categories": _categories(types),
    }
