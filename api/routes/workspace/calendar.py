"""Contract section 12, calendars and events (issue 18), and the calendar's subscribable feed.

Time fields (start, end, duration, from, to, occurrence_start) take what appliance/timeinput.py
parses (ISO 8601, phrases, relative times; naive values in `time_zone`, else the inbox's zone);
answers render times in the inbox's zone and name it (`zone`). The rules live in
appliance/services/workspace/calendar.py, the mail in imip.py.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from appliance.models import Inbox
from api.framework import PUBLIC, Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.workspace import calendar

bp = Blueprint("calendar", __name__)
READ, WRITE = scope("calendar:read"), scope("calendar:write")
TimeText = Field(max_length=200)
CalendarEventStatus = Literal["confirmed", "tentative", "cancelled"]


class CalendarCreate(StrictModel):
    name: PlainText = Field(min_length=1, max_length=100)
    color: PlainText | None = Field(None, max_length=7, description="#rrggbb")


class CalendarObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendar_id: str
    inbox_id: str
    name: str
    color: str | None
    feed_enabled: bool = Field(description="A feed key was made (POST …/feed-key/); the URL works with it.")
    created_at: str
    updated_at: str


class CalendarList(BaseModel):
    results: list[CalendarObject]
    cursor: str | None


class CalendarFeedKey(BaseModel):
    calendar_id: str
    key: str = Field(description="The secret, shown this once; a new one kills the previous URL.")
    feed_url: str = Field(description="The path to subscribe to (Thunderbird, Apple Calendar), with the key.")


class CalendarFeedQuery(StrictModel):
    key: str = Field(min_length=1, max_length=200)


class CalendarParticipant(StrictModel):
    name: PlainText = Field("", max_length=200)
    email: PlainText = Field(max_length=320)
    role: Literal["attendee", "optional", "chair"] = "attendee"


class CalendarReminder(StrictModel):
    value: int = Field(ge=0, le=100_000)
    unit: Literal["minutes", "hours", "days", "weeks"]


class CalendarEventCreate(StrictModel):
    calendar_id: PlainText | None = Field(None, max_length=40,
                                          description="Default: the inbox's `default` calendar.")
    title: PlainText = Field(min_length=1, max_length=500)
    start: PlainText = Field(max_length=200, description="A time, or a date (YYYY-MM-DD) when all_day.")
    end: PlainText | None = Field(None, max_length=200)
    duration: PlainText | None = Field(None, max_length=200, description="ISO 8601 (PT30M) or words (30 minutes); "
                                                                   "default 1 hour (all-day: 1 day).")
    all_day: bool = False
    time_zone: PlainText | None = Field(None, max_length=64, description="IANA zone; default the inbox's zone.")
    description: str = Field("", max_length=20_000, json_schema_extra={"x-multiline": True})
    location: PlainText = Field("", max_length=500)
    status: CalendarEventStatus = "confirmed"
    participants: list[CalendarParticipant] = Field(default_factory=list, max_length=100)
    recurrence: PlainText | None = Field(None, max_length=500,
                                         description="An RFC 5545 RRULE, e.g. FREQ=WEEKLY;COUNT=10.")
    reminders: list[CalendarReminder] = Field(default_factory=list, max_length=10)


class CalendarEventUpdate(StrictModel):
    occurrence_start: PlainText | None = Field(None, max_length=200,
                                         description="Change only this occurrence of a series (its original "
                                                     "start, as listed); status cancelled drops it.")
    calendar_id: PlainText | None = Field(None, max_length=40)
    title: PlainText | None = Field(None, max_length=500)
    start: PlainText | None = Field(None, max_length=200)
    end: PlainText | None = Field(None, max_length=200)
    duration: PlainText | None = Field(None, max_length=200)
    all_day: bool | None = None
    time_zone: PlainText | None = Field(None, max_length=64)
    description: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})
    location: PlainText | None = Field(None, max_length=500)
    status: CalendarEventStatus | None = None
    participants: list[CalendarParticipant] | None = Field(None, max_length=100)
    recurrence: PlainText | None = Field(None, max_length=500, description="null or \"\" ends the recurrence.")
    reminders: list[CalendarReminder] | None = Field(None, max_length=10)


class CalendarEventQuery(StrictModel):
    from_: PlainText | None = Field(None, alias="from", max_length=200,
                              description="With to: each occurrence in the window (series expanded).")
    to: PlainText | None = Field(None, max_length=200)
    calendar_id: PlainText | None = Field(None, max_length=40)
    q: PlainText | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=r"^cal_[0-9A-Za-z]{26}$")


class CalendarEventDeleteQuery(StrictModel):
    occurrence_start: PlainText | None = Field(None, max_length=200, description="Cancel only this occurrence.")


class CalendarRespond(StrictModel):
    response: Literal["accepted", "declined", "tentative"]
    comment: PlainText | None = Field(None, max_length=1000)


class CalendarParticipantOut(BaseModel):
    name: str
    email: str
    role: str
    status: Literal["needs_action", "accepted", "declined", "tentative"]


class CalendarEventObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str
    calendar_id: str
    inbox_id: str
    title: str
    description: str
    location: str
    start: str
    end: str
    duration: str
    all_day: bool
    time_zone: str
    zone: str = Field(description="The zone the times are rendered in (the inbox's).")
    status: CalendarEventStatus
    organizer: dict | None
    participants: list[CalendarParticipantOut]
    recurrence: str | None
    exdates: list[str]
    reminders: list[dict]
    ical_uid: str
    sequence: int
    origin: Literal["local", "invitation"]
    source_message_id: str | None
    created_at: str
    updated_at: str
    occurrence_start: PlainText | None = Field(None, description="In from/to lists: the occurrence's original start.")


class CalendarEventList(BaseModel):
    results: list[CalendarEventObject]
    cursor: str | None


def _input(body: CalendarEventCreate | CalendarEventUpdate) -> calendar.EventInput:
    data = body.model_dump(exclude_unset=True)
    data["participants"] = [p.model_dump() for p in body.participants] if body.participants is not None else None
    data["reminders"] = [r.model_dump() for r in body.reminders] if body.reminders is not None else None
    data.pop("inbox_id", None)
    return calendar.EventInput(**{k: v for k, v in data.items()}, given=set(body.model_fields_set))


def _event(ctx: Ctx, event) -> dict:  # noqa: ANN001
    return calendar.event_to_dict(event, calendar.inbox_zone(ctx.db, ctx.db.get(Inbox, event.inbox_id)))


@endpoint(bp, "/v1/calendar/calendars/", "GET", auth=READ, tag="calendar", response=CalendarList,
          summary="The inbox's calendars (default and tasks always among them)")
def list_calendars(ctx: Ctx) -> dict:
    rows = calendar.list_calendars(ctx.db, ctx.principal, ctx.inbox_id)
    return {"results": [calendar.calendar_to_dict(c) for c in rows], "cursor": None}


@endpoint(bp, "/v1/calendar/calendars/", "POST", auth=WRITE, tag="calendar", body=CalendarCreate,
          response=CalendarObject, status=201, summary="Create a calendar")
def create_calendar(ctx: Ctx) -> dict:
    row = calendar.create_calendar(ctx.db, ctx.principal, ctx.inbox_id, ctx.body.name, ctx.body.color)
    return calendar.calendar_to_dict(row)


@endpoint(bp, "/v1/calendar/calendars/<calendar_id>/feed-key/", "POST", auth=WRITE, tag="calendar",
          response=CalendarFeedKey, summary="A new secret feed URL (shown once); the previous one stops working")
def rotate_feed_key(ctx: Ctx, calendar_id: str) -> dict:
    row, key = calendar.rotate_feed_key(ctx.db, ctx.principal, ctx.inbox_id, calendar_id)
    return {"calendar_id": row.id, "key": key, "feed_url": calendar.feed_path(row.id, key)}


@endpoint(bp, "/v1/calendar/calendars/<calendar_id>/feed.ics", "GET", auth=PUBLIC, tag="calendar", query=CalendarFeedQuery,
          content_type="text/calendar", summary="The calendar as iCalendar, for subscribing; a wrong key is 404")
def feed(ctx: Ctx, calendar_id: str) -> Reply:
    body = calendar.feed(ctx.db, calendar_id, ctx.query.key)
    return Reply(200, Response(body, mimetype="text/calendar", headers={
        "Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}))


@endpoint(bp, "/v1/calendar/events/", "POST", auth=WRITE, tag="calendar", body=CalendarEventCreate, response=CalendarEventObject,
          status=201, summary="Create an event; participants get an iMIP invitation (method=REQUEST)")
def create_event(ctx: Ctx) -> dict:
    event = calendar.create_event(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, _input(ctx.body))
    return _event(ctx, event)


@endpoint(bp, "/v1/calendar/events/", "GET", auth=READ, tag="calendar", query=CalendarEventQuery, response=CalendarEventList,
          summary="Events; with from/to every occurrence in the window, each with occurrence_start")
def list_events(ctx: Ctx) -> dict:
    q = ctx.query
    results, cursor = calendar.list_events(ctx.db, ctx.principal, ctx.inbox_id, frm=q.from_, to=q.to,
                                           calendar_id=q.calendar_id, q=q.q, cursor=q.cursor, limit=q.limit)
    return {"results": results, "cursor": cursor}


@endpoint(bp, "/v1/calendar/events/<event_id>/", "GET", auth=READ, tag="calendar", response=CalendarEventObject,
          summary="One event (a series as stored)")
def get_event(ctx: Ctx, event_id: str) -> dict:
    return _event(ctx, calendar.get_event(ctx.db, ctx.principal, ctx.inbox_id, event_id))


@endpoint(bp, "/v1/calendar/events/<event_id>/", "PATCH", auth=WRITE, tag="calendar", body=CalendarEventUpdate,
          response=CalendarEventObject, summary="Change the series or one occurrence; sequence rises, participants "
                                        "get the update (or method=CANCEL)")
def update_event(ctx: Ctx, event_id: str) -> dict:
    event = calendar.update_event(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, event_id, _input(ctx.body))
    return _event(ctx, event)


@endpoint(bp, "/v1/calendar/events/<event_id>/", "DELETE", auth=WRITE, tag="calendar", query=CalendarEventDeleteQuery,
          status=204, summary="Delete the event (participants get method=CANCEL) or cancel one occurrence")
def delete_event(ctx: Ctx, event_id: str) -> Reply:
    calendar.delete_event(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, event_id, ctx.query.occurrence_start)
    return Reply(204)


@endpoint(bp, "/v1/calendar/events/<event_id>/respond/", "POST", auth=WRITE, tag="calendar", body=CalendarRespond,
          response=CalendarEventObject, summary="Answer an invitation received by mail: a REPLY goes to its organizer")
def respond(ctx: Ctx, event_id: str) -> dict:
    event = calendar.respond(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, event_id, ctx.body.response,
                             ctx.body.comment)
    return _event(ctx, event)
