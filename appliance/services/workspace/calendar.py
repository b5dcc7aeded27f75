"""Calendars and events (contract section 12): create, list with recurrences expanded, change one
occurrence or the series, cancel; the ICS feed; reminders; the agenda's events.

Rules kept here:
- Every inbox has the calendars `default` and `tasks`, made the first time they are needed.
- Times are stored in UTC with the IANA zone they were given in; a recurring series is expanded
  in that zone (icalendar + recurring-ical-events), so 09:00 Europe/Berlin stays 09:00 local
  across a DST change. Answers render times in the inbox's zone and name it (`zone`).
- A changed occurrence is a RECURRENCE-ID override kept on the series (`overrides`, keyed by
  the occurrence's original start in UTC); a cancelled one becomes an EXDATE.
- Each change to an event with participants raises `sequence` and mails them (imip.py) through
  the one send path, so DKIM, caps and approvals apply to invitations as to any mail.
- The feed key is a secret shown once; only its SHA-256 is stored; a wrong key is a 404.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import isodate
from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance import timeinput
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Calendar, CalendarEvent, Inbox, Tenant
from appliance.services import tenancy
from appliance.services.automation import events, schedule
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.identity.settings import inbox_settings

if TYPE_CHECKING:  # icalendar (~5 MB with recurring-ical-events) is imported where used
    import icalendar

BUILT_IN = ("default", "tasks")
STATUSES = ("confirmed", "tentative", "cancelled")
ROLES = {"attendee": "REQ-PARTICIPANT", "optional": "OPT-PARTICIPANT", "chair": "CHAIR"}
PARTSTATS = {"needs_action": "NEEDS-ACTION", "accepted": "ACCEPTED", "declined": "DECLINED",
             "tentative": "TENTATIVE"}
UNITS = {"minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
MAX_OCCURRENCES = 1000  # per from/to query: a daily rule over decades is cut here
REMINDER_SOURCE = "calendar_reminder"
PRODID = "-//Gentbox//Calendar//EN"
_RRULE = re.compile(r"^(RRULE:)?[A-Z]+=[A-Za-z0-9,+\-:=;]+$")
_NOT_FOUND = "No such event."
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass
class EventInput:
    """What create (all of it) and update (the fields given; None: unchanged) take."""

    calendar_id: str | None = None
    title: str | None = None
    start: str | None = None
    end: str | None = None
    duration: str | None = None
    all_day: bool | None = None
    time_zone: str | None = None
    description: str | None = None
    location: str | None = None
    status: str | None = None
    participants: list[dict] | None = None
    recurrence: str | None = None
    reminders: list[dict] | None = None
    occurrence_start: str | None = None  # PATCH: change this occurrence only
    given: set[str] = field(default_factory=set)  # the fields the caller sent (PATCH may clear one)


# --- time -------------------------------------------------------------------------------------
def zone_named(name: str, where: str = "time_zone") -> ZoneInfo:
    """The IANA zone; 400 invalid_time for an unknown name."""
    return timeinput.zone_info(name, field=where)


def inbox_zone(db: Session, inbox: Inbox) -> ZoneInfo:
    """The inbox's zone (its own, its tenant's, else UTC)."""
    name = inbox_settings(inbox, db.get(Tenant, inbox.tenant_id))["default_timezone"]
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _instant(value: str, where: str, zone: ZoneInfo) -> dt.datetime:
    """An aware UTC instant from a time field (naive: in `zone`); 400 invalid_time otherwise."""
    return timeinput.parse_instant(value, zone=str(zone), field=where).at


def _duration(value: str, where: str, start: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The end of a `duration` from `start` (days keep the wall clock in the event's zone)."""
    return timeinput.add(start, timeinput.parse_duration(value, field=where), str(zone))


def _day(value: str, where: str, zone: ZoneInfo) -> dt.date:
    """An all-day event's date: YYYY-MM-DD, or a time whose local date counts."""
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        return _instant(value, where, zone).astimezone(zone).date()


def render(value: dt.datetime, zone: dt.tzinfo) -> str:
    """ISO 8601 in `zone`."""
    return value.astimezone(zone).isoformat(timespec="seconds")


def _utc_key(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- calendars --------------------------------------------------------------------------------
def ensure_calendars(db: Session, inbox: Inbox) -> dict[str, Calendar]:
    """The inbox's built-in calendars, made the first time (`default`, `tasks`). An INSERT that
    ignores a conflict, so two first requests at once make one of each (also in a GET, which
    runs in autocommit on PostgreSQL, where no savepoint is possible)."""
    where = (Calendar.inbox_id == inbox.id, Calendar.name.in_(BUILT_IN))
    found = {c.name: c for c in db.scalars(select(Calendar).where(*where))}
    missing = [name for name in BUILT_IN if name not in found]
    if missing:
        now = utcnow()
        insert = _INSERT[db.get_bind().dialect.name](Calendar.__table__)
        db.execute(insert.on_conflict_do_nothing(), [
            {"id": new_id("cld"), "tenant_id": inbox.tenant_id, "inbox_id": inbox.id, "name": name, "color": None,
             "feed_key_hash": None, "created_at": now, "updated_at": now} for name in missing])
        found = {c.name: c for c in db.scalars(select(Calendar).where(*where))}
    return found


def list_calendars(db: Session, principal: Principal, inbox_id: str | None) -> list[Calendar]:
    """The inbox's calendars, the built-in ones first made if missing."""
    inbox = inbox_for(db, principal, inbox_id)
    ensure_calendars(db, inbox)
    return list(db.scalars(select(Calendar).where(Calendar.inbox_id == inbox.id).order_by(Calendar.id)))


def create_calendar(db: Session, principal: Principal, inbox_id: str | None, name: str,
                    color: str | None) -> Calendar:
    """A new calendar in the inbox; 409 when the name is taken."""
    inbox = inbox_for(db, principal, inbox_id)
    name = name.strip()
    if not name:
        raise ValidationError("name must not be empty", field="name", fix="Send a name such as Travel")
    if color is not None and not _COLOR.fullmatch(color):
        raise ValidationError("color must look like #1a2b3c", field="color", fix="Send a colour as #rrggbb")
    ensure_calendars(db, inbox)
    if db.scalar(select(Calendar.id).where(Calendar.inbox_id == inbox.id, Calendar.name == name)):
        raise ConflictError(f"The inbox already has a calendar named {name!r}.", field="name")
    now = utcnow()
    row = Calendar(id=new_id("cld"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, name=name, color=color,
                   created_at=now, updated_at=now)
    db.add(row)
    db.flush()
    return row


def get_calendar(db: Session, principal: Principal, inbox_id: str | None, calendar_id: str) -> Calendar:
    """One calendar of the inbox; 404 for any other."""
    inbox = inbox_for(db, principal, inbox_id)
    return tenancy.get_owned(db, Calendar, calendar_id, inbox.tenant_id, where=(Calendar.inbox_id == inbox.id,),
                             message="No such calendar.")


def calendar_to_dict(row: Calendar) -> dict:
    return {"calendar_id": row.id, "inbox_id": row.inbox_id, "name": row.name, "color": row.color,
            "feed_enabled": row.feed_key_hash is not None, "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat()}


def feed_path(calendar_id: str, key: str) -> str:
    return f"/v1/calendar/calendars/{calendar_id}/feed.ics?key={key}"


def rotate_feed_key(db: Session, principal: Principal, inbox_id: str | None, calendar_id: str) -> tuple[Calendar, str]:
    """A new secret feed key (returned once); the previous URL stops working at once."""
    row = get_calendar(db, principal, inbox_id, calendar_id)
    key = secrets.token_urlsafe(32)
    row.feed_key_hash, row.updated_at = hashlib.sha256(key.encode()).hexdigest(), utcnow()
    return row, key


def feed(db: Session, calendar_id: str, key: str) -> bytes:
    """The calendar as iCalendar text for subscribers; 404 for a wrong key or calendar."""
    row = db.get(Calendar, calendar_id) if isinstance(calendar_id, str) else None
    digest = hashlib.sha256((key or "").encode()).hexdigest()
    if row is None or row.feed_key_hash is None or not hmac.compare_digest(row.feed_key_hash, digest):
        raise NotFoundError("No such calendar feed.")
    cal = new_calendar(name=row.name)
    for event in db.scalars(select(CalendarEvent).where(CalendarEvent.calendar_id == row.id)
                            .order_by(CalendarEvent.id)):
        for component in components(event):
            cal.add_component(component)
    cal.add_missing_timezones()
    return cal.to_ical()


# --- iCalendar --------------------------------------------------------------------------------
def new_calendar(method: str | None = None, name: str | None = None) -> icalendar.Calendar:
    import icalendar  # imported here: an idle or busy appliance without calendars never loads it

    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    return cal


def _local(event: CalendarEvent, value: dt.datetime) -> dt.datetime | dt.date:
    zone = ZoneInfo(event.time_zone)
    return value.astimezone(zone).date() if event.all_day else value.astimezone(zone)


def _attendee(person: dict) -> icalendar.vCalAddress:
    import icalendar

    address = icalendar.vCalAddress(f"mailto:{person['email']}")
    if person.get("name"):
        address.params["CN"] = person["name"]
    address.params["ROLE"] = ROLES.get(person.get("role") or "attendee", "REQ-PARTICIPANT")
    address.params["PARTSTAT"] = PARTSTATS.get(person.get("status") or "needs_action", "NEEDS-ACTION")
    address.params["RSVP"] = "TRUE"
    return address


def _organizer(event: CalendarEvent) -> icalendar.vCalAddress:
    import icalendar

    address = icalendar.vCalAddress(f"mailto:{event.organizer}")
    return address


def vevent(event: CalendarEvent, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
           changes: dict | None = None, recurrence_id: dt.datetime | None = None,
           attendees: list[dict] | None = None) -> icalendar.Event:
    """One VEVENT of the event (the series, or with recurrence_id one changed occurrence)."""
    import icalendar

    changes = changes or {}
    comp = icalendar.Event()
    comp.add("uid", event.ical_uid)
    comp.add("dtstamp", utcnow().astimezone(dt.timezone.utc))
    comp.add("sequence", event.sequence)
    comp.add("summary", changes.get("title", event.title))
    comp.add("dtstart", _local(event, start or event.start))
    comp.add("dtend", _local(event, end or event.end))
    status = changes.get("status", event.status)
    comp.add("status", status.upper())
    if changes.get("description", event.description):
        comp.add("description", changes.get("description", event.description))
    if changes.get("location", event.location):
        comp.add("location", changes.get("location", event.location))
    if event.organizer:
        comp.add("organizer", _organizer(event))
    for person in attendees if attendees is not None else event.participants or []:
        comp.add("attendee", _attendee(person))
    if recurrence_id is not None:
        comp.add("recurrence-id", _local(event, recurrence_id))
    else:
        if event.recurrence:
            comp.add("rrule", icalendar.vRecur.from_ical(event.recurrence))
        for value in event.exdates or []:
            comp.add("exdate", _local(event, dt.datetime.fromisoformat(value)))
    comp.add("created", event.created_at.astimezone(dt.timezone.utc))
    comp.add("last-modified", event.updated_at.astimezone(dt.timezone.utc))
    return comp


def components(event: CalendarEvent, attendees: list[dict] | None = None) -> list[icalendar.Event]:
    """The series' VEVENT and one per changed occurrence (RECURRENCE-ID)."""
    out = [vevent(event, attendees=attendees)]
    for key, change in sorted((event.overrides or {}).items()):
        original = dt.datetime.fromisoformat(key)
        start = dt.datetime.fromisoformat(change["start"]) if change.get("start") else original
        end = dt.datetime.fromisoformat(change["end"]) if change.get("end") else start + (event.end - event.start)
        out.append(vevent(event, start=start, end=end, changes=change, recurrence_id=original, attendees=attendees))
    return out


def _as_utc(value: dt.datetime | dt.date, zone: ZoneInfo) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=zone)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.timezone.utc)


def occurrences(event: CalendarEvent, frm: dt.datetime, to: dt.datetime) -> list[dict]:
    """The event's occurrences overlapping [frm, to): start, end (UTC), the original start
    (`recurrence_id`) and the changed fields of an overridden one."""
    import recurring_ical_events  # ~5 MB with icalendar: loaded by the first recurring event

    if not event.recurrence:
        if event.start < to and event.end > frm:
            return [{"start": event.start, "end": event.end, "recurrence_id": None, "changes": {}}]
        return []
    cal = new_calendar()
    for component in components(event, attendees=[]):
        cal.add_component(component)
    zone = ZoneInfo(event.time_zone)
    found = []
    # Step through occurrences lazily and stop at `to` or MAX_OCCURRENCES: `between` would first
    # work out every occurrence of the window (an HOURLY rule over a year is 8,784 of them).
    for occ in recurring_ical_events.of(cal).after(frm):
        start, end = _as_utc(occ.DTSTART, zone), _as_utc(occ.DTEND, zone)
        if start >= to or len(found) >= MAX_OCCURRENCES:
            break
        rid = occ.get("RECURRENCE-ID")
        original = _as_utc(rid.dt, zone) if rid is not None else start
        changes = (event.overrides or {}).get(original.isoformat(), {})
        found.append({"start": start, "end": end, "recurrence_id": original, "changes": changes})
    return sorted(found, key=lambda o: o["start"])


# --- events: reading --------------------------------------------------------------------------
def event_to_dict(event: CalendarEvent, zone: ZoneInfo, occurrence: dict | None = None) -> dict:
    """The contract's event object; with `occurrence`, that occurrence of a series."""
    changes = (occurrence or {}).get("changes") or {}
    start = occurrence["start"] if occurrence else event.start
    end = occurrence["end"] if occurrence else event.end
    day = (lambda v: v.astimezone(ZoneInfo(event.time_zone)).date().isoformat()) if event.all_day else None
    out = {"event_id": event.id, "calendar_id": event.calendar_id, "inbox_id": event.inbox_id,
           "title": changes.get("title", event.title), "description": changes.get("description", event.description),
           "location": changes.get("location", event.location),
           "start": day(start) if day else render(start, zone), "end": day(end) if day else render(end, zone),
           "duration": isodate.duration_isoformat(end - start), "all_day": event.all_day,
           "time_zone": event.time_zone, "zone": str(zone), "status": changes.get("status", event.status),
           "organizer": {"email": event.organizer} if event.organizer else None,
           "participants": [dict(p) for p in event.participants or []], "recurrence": event.recurrence,
           "exdates": [render(dt.datetime.fromisoformat(v), zone) for v in event.exdates or []],
           "reminders": list(event.reminders or []), "ical_uid": event.ical_uid, "sequence": event.sequence,
           "origin": event.origin, "source_message_id": event.source_message_id,
           "created_at": render(event.created_at, zone), "updated_at": render(event.updated_at, zone)}
    if occurrence is not None and event.recurrence:
        out["occurrence_start"] = render(occurrence["recurrence_id"], zone)
    return out


def _events_query(inbox: Inbox, calendar_id: str | None, q: str | None):  # noqa: ANN202
    query = select(CalendarEvent).where(CalendarEvent.inbox_id == inbox.id)
    if calendar_id:
        query = query.where(CalendarEvent.calendar_id == calendar_id)
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        query = query.where(or_(CalendarEvent.title.ilike(like), CalendarEvent.description.ilike(like),
                                CalendarEvent.location.ilike(like)))
    return query


def list_events(db: Session, principal: Principal, inbox_id: str | None, *, frm: str | None, to: str | None,
                calendar_id: str | None = None, q: str | None = None, cursor: str | None = None,
                limit: int = 50) -> tuple[list[dict], str | None]:
    """Events of the inbox: with from/to each occurrence in the window (series expanded, by
    start, no further page); without, the events and series themselves, paged by id."""
    inbox = inbox_for(db, principal, inbox_id)
    zone = inbox_zone(db, inbox)
    query = _events_query(inbox, calendar_id, q)
    if frm is None and to is None:
        if cursor:
            query = query.where(CalendarEvent.id > cursor)
        rows = list(db.scalars(query.order_by(CalendarEvent.id).limit(limit + 1)))
        page = rows[:limit]
        return [event_to_dict(e, zone) for e in page], (page[-1].id if len(rows) > limit else None)
    start = _instant(frm, "from", zone) if frm else dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    try:
        end = _instant(to, "to", zone) if to else start + dt.timedelta(days=366)
    except OverflowError:  # a `from` in the year 9999
        raise ValidationError("from is too far in the future", field="from",
                              fix="Send a time before the year 9000, or a `to` as well.") from None
    return expanded(db, inbox, start, end, query, zone), None


def expanded(db: Session, inbox: Inbox, start: dt.datetime, end: dt.datetime, query=None,  # noqa: ANN001
             zone: ZoneInfo | None = None) -> list[dict]:
    """Every occurrence of the inbox's events in [start, end), by start."""
    zone = zone or inbox_zone(db, inbox)
    query = query if query is not None else _events_query(inbox, None, None)
    query = query.where(CalendarEvent.start < end,
                        or_(CalendarEvent.recurrence.is_not(None), CalendarEvent.end > start))
    found = []
    for event in db.scalars(query.order_by(CalendarEvent.start)):
        found += [(o["start"], event.id, event_to_dict(event, zone, o)) for o in occurrences(event, start, end)]
    return [item for _, _, item in sorted(found, key=lambda t: (t[0], t[1]))][:MAX_OCCURRENCES]


def get_event(db: Session, principal: Principal, inbox_id: str | None, event_id: str,
              for_update: bool = False) -> CalendarEvent:
    """One event of the inbox; 404 for any other."""
    inbox = inbox_for(db, principal, inbox_id)
    return tenancy.get_owned(db, CalendarEvent, event_id, inbox.tenant_id,
                             where=(CalendarEvent.inbox_id == inbox.id,), message=_NOT_FOUND,
                             for_update=for_update)


AGENDA_DAYS = 30  # the agenda's window when it names no end


def agenda_items(db: Session, inbox_id: str, frm: dt.datetime | None, to: dt.datetime | None) -> list[dict]:
    """The inbox's event occurrences in [frm, to) as agenda items (GET /v1/agenda/); without
    bounds from now, for AGENDA_DAYS after the start."""
    inbox = db.get(Inbox, inbox_id)
    if inbox is None:
        return []
    frm = frm or utcnow()
    to = to or frm + dt.timedelta(days=AGENDA_DAYS)
    items = []
    for item in expanded(db, inbox, frm, to):
        if item["status"] == "cancelled":
            continue
        items.append({"kind": "event", "id": item["event_id"], "title": item["title"], "at": item["start"],
                      "pending": False, "resource": item})
    return items


# --- events: writing --------------------------------------------------------------------------
def _participants(entries: list[dict], previous: list[dict] | None = None) -> list[dict]:
    from appliance.services.mail.compose import normalize_address  # the one address rule
    known = {p["email"]: p for p in previous or []}
    out: dict[str, dict] = {}
    for i, entry in enumerate(entries):
        email = normalize_address(entry["email"], f"participants[{i}].email")
        role = entry.get("role") or "attendee"
        if role not in ROLES:
            raise ValidationError(f"participants[{i}].role must be one of {', '.join(ROLES)}",
                                  field=f"participants[{i}].role")
        status = known.get(email, {}).get("status") or entry.get("status") or "needs_action"
        out[email] = {"name": (entry.get("name") or "").strip(), "email": email, "role": role, "status": status}
    return list(out.values())


def _recurrence(value: str | None) -> str | None:
    import icalendar

    if not value:
        return None
    text = value.strip().removeprefix("RRULE:")
    try:
        if not _RRULE.match(text):
            raise ValueError(text)
        rule = icalendar.vRecur.from_ical(text)
        if "FREQ" not in rule:
            raise ValueError(text)
    except (ValueError, TypeError):
        raise ValidationError("recurrence is not an RFC 5545 RRULE", field="recurrence",
                              fix="Send e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=10") from None
    if str(rule["FREQ"][0]).upper() in ("SECONDLY", "MINUTELY"):  # a calendar event, not a timer
        raise ValidationError("recurrence: FREQ=SECONDLY and FREQ=MINUTELY are not calendar events",
                              field="recurrence", fix="Use HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY.")
    return rule.to_ical().decode()


def _reminders(entries: list[dict]) -> list[dict]:
    out = []
    for i, entry in enumerate(entries):
        if entry.get("unit") not in UNITS or not isinstance(entry.get("value"), int) or entry["value"] < 0:
            raise ValidationError(f"reminders[{i}] needs a value (0 or more) and a unit ({', '.join(UNITS)})",
                                  field=f"reminders[{i}]", fix='Send {"value": 15, "unit": "minutes"}')
        out.append({"value": entry["value"], "unit": entry["unit"]})
    return out


def _times(data: EventInput, zone: ZoneInfo, event: CalendarEvent | None) -> tuple[dt.datetime, dt.datetime, bool]:
    """start and end (UTC) and all_day from the input, the event's values where not given."""
    all_day = data.all_day if data.all_day is not None else (event.all_day if event else False)
    if data.start is None and event is None:
        raise ValidationError("start is required", field="start", code="invalid_time", fix=timeinput.INSTANT_FIX)
    if all_day:
        day = _day(data.start, "start", zone) if data.start is not None else event.start.astimezone(zone).date()
        start = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.timezone.utc)
    else:
        start = _instant(data.start, "start", zone) if data.start is not None else event.start
    if data.end is not None and data.duration is not None:
        raise ValidationError("Send duration or end, not both.", field="duration")
    if data.end is not None:
        end = (dt.datetime.combine(_day(data.end, "end", zone), dt.time(), tzinfo=zone).astimezone(dt.timezone.utc)
               if all_day else _instant(data.end, "end", zone))
    elif data.duration is not None:
        end = _duration(data.duration, "duration", start, zone)
    elif event is not None:
        end = start + (event.end - event.start)
    else:
        end = _duration("P1D" if all_day else "PT1H", "duration", start, zone)
    if end <= start:
        raise ValidationError("end must be after start", field="end", code="invalid_time")
    return start, end, all_day


def _status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}", field="status")
    return value


def create_event(db: Session, settings: Settings, principal: Principal, inbox_id: str | None,
                 data: EventInput) -> CalendarEvent:
    """A new event (or series) in the inbox; its participants are invited by mail."""
    inbox = inbox_for(db, principal, inbox_id)
    zone = zone_named(data.time_zone) if data.time_zone else inbox_zone(db, inbox)
    calendars = ensure_calendars(db, inbox)
    calendar = (tenancy.get_owned(db, Calendar, data.calendar_id, inbox.tenant_id, where=(Calendar.inbox_id == inbox.id,),
                                  message="No such calendar.", field="calendar_id")
                if data.calendar_id else calendars["default"])
    if not (data.title or "").strip():
        raise ValidationError("title must not be empty", field="title", fix="Send a title")
    start, end, all_day = _times(data, zone, None)
    now = utcnow()
    event = CalendarEvent(
        id=new_id("cal"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, calendar_id=calendar.id,
        ical_uid=f"{secrets.token_hex(16)}@{inbox.address.rpartition('@')[2]}", sequence=0,
        title=data.title.strip(), description=data.description or "", location=data.location or "",
        start=start, end=end, all_day=all_day, time_zone=str(zone), status=_status(data.status) or "confirmed",
        recurrence=_recurrence(data.recurrence), exdates=[], overrides={}, organizer=inbox.address,
        participants=_participants(data.participants or []), reminders=_reminders(data.reminders or []),
        origin="local", source_message_id=None, created_at=now, updated_at=now)
    db.add(event)
    db.flush()
    _emit(db, "event.created", event, principal)
    plan_reminders(db, event)
    if event.participants and event.status != "cancelled":
        _imip().invite(db, settings, principal, inbox, event, event.participants)
    return event


def _imip():  # noqa: ANN202 - imip builds on this module; imported when a change is mailed
    from appliance.services.workspace import imip
    return imip


def _emit(db: Session, type_: str, event: CalendarEvent, actor: Any, **extra: Any) -> None:
    events.emit(db, type_, tenant_id=event.tenant_id, inbox_id=event.inbox_id, resource_id=event.id, actor=actor,
                payload={"title": event.title[:200], "start": event.start.isoformat(), "status": event.status,
                         "ical_uid": event.ical_uid, "sequence": event.sequence, **extra})


def _find_occurrence(event: CalendarEvent, value: str, zone: ZoneInfo) -> dt.datetime:
    if not event.recurrence:
        raise ValidationError("occurrence_start is only for recurring events", field="occurrence_start")
    wanted = _instant(value, "occurrence_start", zone)
    window = occurrences(event, wanted - dt.timedelta(days=2), wanted + dt.timedelta(days=2))
    for occ in window:
        if occ["recurrence_id"] == wanted:
            return wanted
    raise NotFoundError("The event has no occurrence at occurrence_start.", field="occurrence_start",
                        fix="Send an occurrence_start from GET /v1/calendar/events/?from=…&to=…")


def _change_occurrence(event: CalendarEvent, data: EventInput, zone: ZoneInfo) -> None:
    original = _find_occurrence(event, data.occurrence_start, zone)
    key = original.isoformat()
    overrides = dict(event.overrides or {})
    if _status(data.status) == "cancelled":
        overrides.pop(key, None)
        event.exdates = sorted({*(event.exdates or []), key})
    else:
        change = dict(overrides.get(key, {}))
        for name in ("title", "description", "location", "status"):
            if getattr(data, name) is not None:
                change[name] = getattr(data, name)
        if data.start is not None or data.end is not None or data.duration is not None:
            shadow = CalendarEvent(start=original, end=original + (event.end - event.start), all_day=event.all_day)
            start, end, _ = _times(EventInput(start=data.start, end=data.end, duration=data.duration), zone, shadow)
            change["start"], change["end"] = start.isoformat(), end.isoformat()
        overrides[key] = change
    event.overrides = overrides


def _change_series(db: Session, event: CalendarEvent, data: EventInput, zone: ZoneInfo) -> None:
    if data.title is not None:
        if not data.title.strip():
            raise ValidationError("title must not be empty", field="title")
        event.title = data.title.strip()
    for name in ("description", "location"):
        if getattr(data, name) is not None:
            setattr(event, name, getattr(data, name))
    if data.time_zone is not None:
        event.time_zone = str(zone)
    if data.calendar_id is not None:
        event.calendar_id = tenancy.get_owned(db, Calendar, data.calendar_id, event.tenant_id,
                                              where=(Calendar.inbox_id == event.inbox_id,),
                                              message="No such calendar.", field="calendar_id").id
    if any(v is not None for v in (data.start, data.end, data.duration, data.all_day)):
        event.start, event.end, event.all_day = _times(data, zone, event)
    if "recurrence" in data.given:
        event.recurrence = _recurrence(data.recurrence)
        if not event.recurrence:
            event.exdates, event.overrides = [], {}
    if data.status is not None:
        event.status = _status(data.status)
    if data.reminders is not None:
        event.reminders = _reminders(data.reminders)


def update_event(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, event_id: str,
                 data: EventInput) -> CalendarEvent:
    """Change the series, or one occurrence (`occurrence_start`); participants get the update."""
    inbox = inbox_for(db, principal, inbox_id)
    event = get_event(db, principal, inbox.id, event_id, for_update=True)
    zone = zone_named(data.time_zone) if data.time_zone else ZoneInfo(event.time_zone)
    was_cancelled, before = event.status == "cancelled", list(event.participants or [])
    if data.occurrence_start is not None:
        _change_occurrence(event, data, zone)
    else:
        _change_series(db, event, data, zone)
    if data.participants is not None:
        event.participants = _participants(data.participants, before)
    if event.origin == "local":  # a received invitation's SEQUENCE is its organiser's to raise
        event.sequence += 1
    event.updated_at = utcnow()
    cancelled = event.status == "cancelled" and not was_cancelled
    _emit(db, "event.cancelled" if cancelled else "event.updated", event, principal,
          **({"occurrence_start": _instant(data.occurrence_start, "occurrence_start", zone).isoformat()}
             if data.occurrence_start else {}))
    plan_reminders(db, event)
    _mail_change(db, settings, principal, inbox, event, before, cancelled)
    return event


def _mail_change(db: Session, settings: Settings, principal: Principal, inbox: Inbox, event: CalendarEvent,
                 before: list[dict], cancelled: bool) -> None:
    """The organiser's update to its participants: REQUEST (or CANCEL), and CANCEL to removed ones."""
    if event.origin != "local":
        return  # a received invitation is the organiser's to change; respond answers it
    now = {p["email"] for p in event.participants or []}
    removed = [p for p in before if p["email"] not in now]
    imip = _imip()
    if cancelled and event.participants:
        imip.cancel(db, settings, principal, inbox, event, event.participants)
    elif event.participants and event.status != "cancelled":
        imip.invite(db, settings, principal, inbox, event, event.participants)
    if removed:
        imip.cancel(db, settings, principal, inbox, event, removed)


def delete_event(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, event_id: str,
                 occurrence_start: str | None = None) -> CalendarEvent | None:
    """Delete the event (participants get a CANCEL), or cancel one occurrence of a series."""
    if occurrence_start is not None:
        return update_event(db, settings, principal, inbox_id, event_id,
                            EventInput(occurrence_start=occurrence_start, status="cancelled"))
    inbox = inbox_for(db, principal, inbox_id)
    event = get_event(db, principal, inbox.id, event_id, for_update=True)
    if event.origin == "local" and event.participants and event.status != "cancelled":
        event.sequence += 1
        event.status = "cancelled"
        _imip().cancel(db, settings, principal, inbox, event, event.participants)
    _emit(db, "event.cancelled", event, principal, deleted=True)
    schedule.cancel_prefix(db, f"calendar:{event.id}:")
    db.delete(event)
    return None


def respond(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, event_id: str,
            response: str, comment: str | None) -> CalendarEvent:
    """Answer a received invitation: the inbox's participant status, and a REPLY to the organiser."""
    inbox = inbox_for(db, principal, inbox_id)
    event = get_event(db, principal, inbox.id, event_id, for_update=True)
    if response not in ("accepted", "declined", "tentative"):
        raise ValidationError("response must be accepted, declined or tentative", field="response")
    if event.origin != "invitation" or not event.organizer:
        raise ConflictError("Only an invitation received by mail can be answered.",
                            fix="Change your own events with PATCH /v1/calendar/events/{id}/.")
    people = [dict(p) for p in event.participants or []]
    me = next((p for p in people if p["email"] == inbox.address), None)
    if me is None:
        me = {"name": inbox.display_name or "", "email": inbox.address, "role": "attendee", "status": "needs_action"}
        people.append(me)
    me["status"] = response
    event.participants = people
    event.status = {"accepted": "confirmed", "tentative": "tentative"}.get(response, event.status)
    event.updated_at = utcnow()
    _emit(db, "event.updated", event, principal, response=response)
    _imip().reply(db, settings, principal, inbox, event, me, comment)
    return event


# --- reminders --------------------------------------------------------------------------------
def _offset(reminder: dict) -> dt.timedelta:
    return dt.timedelta(seconds=reminder["value"] * UNITS[reminder["unit"]])


def _next_start(event: CalendarEvent, after: dt.datetime) -> dt.datetime | None:
    if not event.recurrence:
        return event.start if event.start > after else None
    lo = max(after, event.start - dt.timedelta(seconds=1))  # a series starting years ahead
    for occ in occurrences(event, lo, lo + dt.timedelta(days=800)):
        if occ["start"] > after and occ["changes"].get("status") != "cancelled":
            return occ["start"]
    return None


def plan_reminders(db: Session, event: CalendarEvent) -> None:
    """One schedule row per reminder, due at the next start minus its offset (re-armed for a
    series by the scheduler through `_next_reminder`). The event fired is `event.updated` with
    `reminder` in its payload (contract section 12); due_at + offset_seconds is the start."""
    schedule.cancel_prefix(db, f"calendar:{event.id}:")
    if event.status == "cancelled":
        return
    now = utcnow()
    for i, reminder in enumerate(event.reminders or []):
        offset = _offset(reminder)
        start = _next_start(event, now + offset)
        if start is None:
            continue
        schedule.plan(db, tenant_id=event.tenant_id, inbox_id=event.inbox_id, key=f"calendar:{event.id}:{i}",
                      source=REMINDER_SOURCE, event_type="event.updated", due_at=start - offset,
                      resource_id=event.id, payload={"title": event.title[:200], "reminder": reminder,
                                                     "offset_seconds": int(offset.total_seconds())})


def _next_reminder(db: Session, row: Any) -> dt.datetime | None:
    """A series' reminder re-armed at its next occurrence (None: the series is over or gone)."""
    event = db.get(CalendarEvent, row.resource_id) if row.resource_id else None
    if event is None or not event.recurrence or event.status == "cancelled":
        return None
    offset = dt.timedelta(seconds=(row.payload or {}).get("offset_seconds", 0))
    start = _next_start(event, row.due_at + offset)
    return start - offset if start is not None else None


def register_schedule() -> None:
    """Connect the reminders' re-arming to the scheduler (register_handlers calls it)."""
    schedule.register_next(REMINDER_SOURCE, _next_reminder)
