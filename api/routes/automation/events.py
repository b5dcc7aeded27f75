"""Contract section 6: the event log of an inbox."""
from __future__ import annotations

from flask import Blueprint

from api import schemas as s
from api.framework import Ctx, endpoint, scope
from appliance.services.automation import events
from appliance.services.identity.auth import inbox_for

bp = Blueprint("events", __name__)


@endpoint(bp, "/v1/events/", "GET", auth=scope("email:read"), tag="events", query=s.EventQuery,
          response=s.EventList, summary="Events of the caller's inbox in commit order (seq), after a cursor")
def list_events(ctx: Ctx) -> dict:
    q = ctx.query
    inbox = inbox_for(ctx.db, ctx.principal, q.inbox_id)
    types = events.parse_types(q.types)
    rows = events.list_events(ctx.db, inbox_id=inbox.id, after=q.after, types=types, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [events.event_to_dict(e) for e in page],
            "cursor": str(page[-1].seq) if len(rows) > q.limit else None}
