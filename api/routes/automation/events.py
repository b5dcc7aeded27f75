"""Contract sections 6 and 8: the event log of an inbox, and its live stream."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from pydantic import Field

from api import schemas as s
from api.framework import Ctx, Reply, StrictModel, _bearer, endpoint, scope
from appliance.errors import ValidationError
from appliance.services.automation import events, stream
from appliance.services.identity.auth import authenticate, inbox_for

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


# --- the live stream (issue 15.5; docs/events.md, "Live stream") --------------------------------
class EventStreamQuery(StrictModel):
    inbox_id: str | None = Field(None, max_length=40)
    after: str | None = Field(None, max_length=40, pattern=r"^([0-9]{1,18}|[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26})$",
                              description="Start after this cursor (a seq, or an event id); the Last-Event-ID "
                                          "header wins. Neither: only events committed from now on.")
    types: str | None = Field(None, max_length=1000, description="Comma-separated event types (registered ones).")


@endpoint(bp, "/v1/events/stream/", "GET", auth=scope("email:read"), tag="events", query=EventStreamQuery,
          content_type="text/event-stream",
          summary="Server-Sent Events of the caller's inbox: id = seq cursor, event = type, data = the event; "
                  "resumes after Last-Event-ID without gap or duplicate; ': keepalive' comments; 429 past the "
                  "open-stream limits")
def stream_events(ctx: Ctx) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    spec = _stream_spec(ctx, inbox.id, _resume_point(ctx, inbox.id))
    principal, settings = ctx.principal, ctx.settings
    store = current_app.extensions["gentbox"]
    notifier = stream.notifier_for(store)
    key = f"{principal.kind}:{principal.token.id if principal.is_agent else principal.session.id}"
    notifier.acquire(key, settings.event_stream_max_per_token, settings.event_stream_max_per_process)
    body = stream.EventStream(store, notifier, key, spec,
                              peer=request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket"))
    # X-Accel-Buffering: nginx passes each event on at once. Connection: close: a stream that ends
    # (revoked, shutdown) closes its connection rather than keeping it idle for another request.
    return Reply(200, Response(body, mimetype="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "close"}))


def _resume_point(ctx: Ctx, inbox_id: str) -> int:
    """The seq to send events after: Last-Event-ID, else `after`, else the newest committed one."""
    last_event_id = request.headers.get("Last-Event-ID", "").strip() or None
    if last_event_id is not None and not (last_event_id.isascii() and last_event_id.isdigit()):
        raise ValidationError("Last-Event-ID must be the id (a seq) of an event this stream sent.",
                              field="Last-Event-ID", fix="Send back the last id: line you received, or leave it out.")
    cursor = events.resolve_cursor(ctx.db, last_event_id or ctx.query.after, inbox_id=inbox_id)
    return stream.current_seq(ctx.db) if cursor is None else cursor


def _stream_spec(ctx: Ctx, inbox_id: str, position: int) -> stream.StreamSpec:
    types, raw, principal = events.parse_types(ctx.query.types), _bearer(), ctx.principal
    named = inbox_id if principal.own_inbox_id is None else None  # sessions name it; agent tokens own one

    def check(db) -> None:  # noqa: ANN001 - the token still valid and still allowed this inbox
        inbox_for(db, authenticate(db, raw), named)

    def read(db, after: int, limit: int) -> list:  # noqa: ANN001
        return events.list_events(db, inbox_id=inbox_id, after=after, types=types, limit=limit)
    return stream.StreamSpec(inbox_id=inbox_id, read=read, render=events.event_to_dict, check=check,
                             position=position, keepalive=ctx.settings.event_stream_keepalive,
                             auth_interval=ctx.settings.event_stream_auth_interval)
