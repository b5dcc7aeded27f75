"""Invitations as mail (iTIP RFC 5546 over iMIP RFC 6047): sending REQUEST, CANCEL and REPLY,
and applying the ones received.

Out: every invitation is a normal message of the organiser's inbox through
`outbound.send` (DKIM, caps, approvals: a held `email:send` holds it too), with the iCalendar
text as a `text/calendar; method=…` alternative next to text/plain and text/html.

In: the worker reads `message.received` events after its own cursor (`alert_cursors` row
`calendar-imip`), so the SMTP hot path does no iCalendar work. A message with a calendar part:
- REQUEST makes (or, with a SEQUENCE not older, updates) a `tentative` event in the inbox's
  default calendar, from the organiser;
- REPLY from an attendee updates that attendee's status on the organiser's event;
- CANCEL from the organiser cancels the event (or, with RECURRENCE-ID, that occurrence).
Each is linked from the message (`calendar_invitations`: the message's `invitation`). A REPLY or
CANCEL is honoured only from the address it speaks for (the attendee, the organiser). Data that
does not parse is left alone: the message stays as it came, the part an attachment.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import logging
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.ids import new_id
from appliance.models import (CalendarEvent, CalendarInvitation, Event, Inbox, Message,
                              MessageRaw)
from appliance.services.automation import events, tailer
from appliance.services.identity.auth import Principal
from appliance.services.mail import compose, outbound
from appliance.services.workspace import calendar

if TYPE_CHECKING:  # icalendar is imported where a calendar part is read (most mail has none)
    import icalendar

log = logging.getLogger("gentbox.calendar")
CURSOR = "calendar-imip"  # the alert_cursors row of the invitation reader
BATCH = 200
MAX_CALENDAR_BYTES = 1_000_000  # a calendar part larger than this is kept as an attachment only
_PARTSTAT = {v: k for k, v in calendar.PARTSTATS.items()}
_ROLE = {v: k for k, v in calendar.ROLES.items()}


# --- out --------------------------------------------------------------------------------------
def ics(method: str, comps: list[icalendar.Event]) -> str:
    """A VCALENDAR with METHOD and the components (their zones' VTIMEZONEs included)."""
    cal = calendar.new_calendar(method=method)
    for comp in comps:
        cal.add_component(comp)
    cal.add_missing_timezones()
    return cal.to_ical().decode()


def _when(event: CalendarEvent) -> str:
    zone = ZoneInfo(event.time_zone)
    if event.all_day:
        return event.start.astimezone(zone).date().isoformat() + " (all day)"
    return event.start.astimezone(zone).strftime("%Y-%m-%d %H:%M") + f" ({event.time_zone})"


def _send(db: Session, settings: Settings, principal: Principal, inbox: Inbox, people: list[dict],
          subject: str, lines: list[str], method: str, text: str) -> Message:
    body = "\n".join(lines) + "\n"
    markup = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    request = compose.SendRequest(to=[compose.Recipient(p["email"], p.get("name") or "") for p in people],
                                  subject=subject[:900], text_body=body, html_body=f"<html><body>{markup}</body></html>",
                                  calendar=(method, text))
    return outbound.send(db, settings, principal, inbox, request)


def _summary(event: CalendarEvent) -> list[str]:
    lines = [event.title, f"When: {_when(event)}"]
    if event.location:
        lines.append(f"Where: {event.location}")
    if event.recurrence:
        lines.append(f"Repeats: {event.recurrence}")
    if event.description:
        lines += ["", event.description]
    return lines


def invite(db: Session, settings: Settings, principal: Principal, inbox: Inbox, event: CalendarEvent,
           people: list[dict]) -> Message:
    """METHOD:REQUEST to the participants (a new invitation, or an update with a higher SEQUENCE)."""
    text = ics("REQUEST", calendar.components(event))
    label = "Invitation" if event.sequence == 0 else "Updated invitation"
    return _send(db, settings, principal, inbox, people, f"{label}: {event.title} @ {_when(event)}",
                 [f"{inbox.address} invites you:", *_summary(event)], "REQUEST", text)


def cancel(db: Session, settings: Settings, principal: Principal, inbox: Inbox, event: CalendarEvent,
           people: list[dict]) -> Message:
    """METHOD:CANCEL of the whole event to these participants."""
    comp = calendar.vevent(event, changes={"status": "cancelled"}, attendees=people)
    return _send(db, settings, principal, inbox, people, f"Cancelled: {event.title} @ {_when(event)}",
                 [f"{inbox.address} cancelled:", *_summary(event)], "CANCEL", ics("CANCEL", [comp]))


def reply(db: Session, settings: Settings, principal: Principal, inbox: Inbox, event: CalendarEvent,
          me: dict, comment: str | None) -> Message:
    """METHOD:REPLY to the organiser with this inbox's answer (only its own ATTENDEE)."""
    comp = calendar.vevent(event, attendees=[me])
    comp.pop("RRULE", None)
    comp.pop("EXDATE", None)
    if comment:
        comp.add("comment", comment)
    word = {"accepted": "Accepted", "declined": "Declined", "tentative": "Tentative"}[me["status"]]
    lines = [f"{inbox.address} answered {word.lower()}: {event.title} @ {_when(event)}"] + ([comment] if comment else [])
    return _send(db, settings, principal, inbox, [{"email": event.organizer, "name": ""}],
                 f"{word}: {event.title} @ {_when(event)}", lines, "REPLY", ics("REPLY", [comp]))


# --- in ---------------------------------------------------------------------------------------
def calendar_parts(raw: bytes) -> list[tuple[str, icalendar.Calendar]]:
    """The iCalendar parts of a message that parse, with their METHOD (from the data, else the
    Content-Type's method parameter); parts that do not parse are skipped."""
    import icalendar

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    found = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("text/calendar", "application/ics") or part.is_multipart():
            continue
        try:
            data = part.get_payload(decode=True) or b""
            if len(data) > MAX_CALENDAR_BYTES:
                continue
            cal = icalendar.Calendar.from_ical(data)
        except Exception:  # noqa: BLE001 - malformed calendar data never breaks the message
            continue
        method = str(cal.get("METHOD") or part.get_param("method") or "").upper()
        if method in ("REQUEST", "REPLY", "CANCEL"):
            found.append((method, cal))
    return found


def _email(value: object) -> str:
    text = str(value or "").strip()
    return text[7:].lower() if text.lower().startswith("mailto:") else text.lower()


def _utc(value: dt.datetime | dt.date, zone: ZoneInfo) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), tzinfo=zone).astimezone(dt.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.timezone.utc)


def _zone_of(comp: icalendar.Event) -> ZoneInfo:
    """The IANA zone of DTSTART: its TZID, or the IANA name of a Windows one (Outlook's
    "W. Europe Standard Time"); UTC when neither is known (the instants stay exact)."""
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    start = comp.get("DTSTART")
    value = start.dt if start is not None else None
    tzid = str(start.params.get("TZID") or "") if start is not None else ""
    for name in (getattr(getattr(value, "tzinfo", None), "key", None), tzid, WINDOWS_TO_OLSON.get(tzid)):
        if name:
            try:
                return ZoneInfo(name)
            except (ValueError, KeyError, OSError):
                continue
    return ZoneInfo("UTC")


def _people(comp: icalendar.Event) -> list[dict]:
    raw = comp.get("ATTENDEE")
    entries = raw if isinstance(raw, list) else [raw] if raw is not None else []
    out = []
    for entry in entries:
        address = _email(entry)
        if "@" not in address:
            continue
        params = getattr(entry, "params", {})
        out.append({"name": str(params.get("CN", ""))[:200], "email": address,
                    "role": _ROLE.get(str(params.get("ROLE", "REQ-PARTICIPANT")).upper(), "attendee"),
                    "status": _PARTSTAT.get(str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(), "needs_action")})
    return out


def _fields(comp: icalendar.Event) -> dict:
    zone = _zone_of(comp)
    start = comp.get("DTSTART").dt
    all_day = not isinstance(start, dt.datetime)
    end_prop = comp.get("DTEND")
    begin = _utc(start, zone)
    if end_prop is not None:
        end = _utc(end_prop.dt, zone)
    elif comp.get("DURATION") is not None:
        end = begin + comp.get("DURATION").dt
    else:
        end = begin + (dt.timedelta(days=1) if all_day else dt.timedelta(hours=1))
    rrule = comp.get("RRULE")
    exdates = []
    for ex in (comp.get("EXDATE") if isinstance(comp.get("EXDATE"), list) else [comp.get("EXDATE")]):
        for value in getattr(ex, "dts", []) if ex is not None else []:
            exdates.append(_utc(value.dt, zone).isoformat())
    return {"title": str(comp.get("SUMMARY") or "(no title)")[:500], "description": str(comp.get("DESCRIPTION") or ""),
            "location": str(comp.get("LOCATION") or "")[:500], "start": begin, "end": max(end, begin + dt.timedelta(minutes=1)),
            "all_day": all_day, "time_zone": zone.key, "recurrence": rrule.to_ical().decode() if rrule else None,
            "exdates": sorted(set(exdates)), "participants": _people(comp),
            "sequence": int(comp.get("SEQUENCE") or 0)}


def _split(cal: icalendar.Calendar) -> tuple[icalendar.Event | None, list[icalendar.Event]]:
    """The series (or single) VEVENT and the changed occurrences (with RECURRENCE-ID)."""
    master, changed = None, []
    for comp in cal.walk("VEVENT"):
        if comp.get("UID") is None or comp.get("DTSTART") is None and comp.get("RECURRENCE-ID") is None:
            continue
        if comp.get("RECURRENCE-ID") is not None:
            changed.append(comp)
        elif master is None:
            master = comp
    return master, changed


def _link(db: Session, message: Message, event_id: str | None, method: str, organizer: str) -> None:
    db.merge(CalendarInvitation(message_id=message.id, tenant_id=message.tenant_id, inbox_id=message.inbox_id,
                                event_id=event_id, method=method, organizer=organizer[:320], created_at=utcnow()))


def _event_by_uid(db: Session, inbox_id: str, uid: str) -> CalendarEvent | None:
    return db.scalar(select(CalendarEvent).where(CalendarEvent.inbox_id == inbox_id,
                                                 CalendarEvent.ical_uid == uid[:255]).with_for_update())


def _overrides(changed: list[icalendar.Event], zone: ZoneInfo) -> dict:
    out = {}
    for comp in changed:
        key = _utc(comp.get("RECURRENCE-ID").dt, zone).isoformat()
        if comp.get("DTSTART") is None:
            continue
        f = _fields(comp)
        out[key] = {"title": f["title"], "description": f["description"], "location": f["location"],
                    "start": f["start"].isoformat(), "end": f["end"].isoformat(),
                    "status": "cancelled" if str(comp.get("STATUS", "")).upper() == "CANCELLED" else "tentative"}
    return out


def _apply_request(db: Session, inbox: Inbox, message: Message, cal: icalendar.Calendar) -> None:
    master, changed = _split(cal)
    comp = master or (changed[0] if changed else None)
    if comp is None:
        return
    organizer = _email(comp.get("ORGANIZER")) or message.from_email.lower()
    uid = str(comp.get("UID"))
    event = _event_by_uid(db, inbox.id, uid)
    if event is not None and (event.origin != "invitation" or event.organizer != organizer):
        return _link(db, message, None, "REQUEST", organizer)  # someone else's UID: never overwrite
    if master is None:  # an update of single occurrences only
        if event is not None:
            event.overrides = {**(event.overrides or {}), **_overrides(changed, ZoneInfo(event.time_zone))}
            event.updated_at = utcnow()
            calendar._emit(db, "event.updated", event, events.WORKER)
        return _link(db, message, event.id if event else None, "REQUEST", organizer)
    f = _fields(master)
    if event is not None and f["sequence"] < event.sequence:
        return _link(db, message, event.id, "REQUEST", organizer)  # an older update arriving late
    now, created = utcnow(), event is None
    if created:
        cals = calendar.ensure_calendars(db, inbox)
        event = CalendarEvent(id=new_id("cal"), tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                              calendar_id=cals["default"].id, ical_uid=uid[:255], origin="invitation",
                              organizer=organizer, reminders=[], created_at=now)
        db.add(event)
    mine = next((p["status"] for p in event.participants or [] if p["email"] == inbox.address), None)
    people = f.pop("participants")
    for person in people:
        if person["email"] == inbox.address and mine:
            person["status"] = mine  # our own answer stands across the organiser's updates
    for name, value in f.items():
        setattr(event, name, value)
    event.participants, event.status = people, "tentative" if mine in (None, "needs_action", "tentative") else (
        "confirmed" if mine == "accepted" else "tentative")
    event.overrides = _overrides(changed, _zone_of(master))
    event.source_message_id, event.updated_at = message.id, now
    db.flush()
    calendar._emit(db, "event.created" if created else "event.updated", event, events.WORKER,
                   invitation_message_id=message.id)
    _link(db, message, event.id, "REQUEST", organizer)


def _apply_reply(db: Session, inbox: Inbox, message: Message, cal: icalendar.Calendar) -> None:
    master, changed = _split(cal)
    comp = master or (changed[0] if changed else None)
    if comp is None:
        return
    event = _event_by_uid(db, inbox.id, str(comp.get("UID")))
    sender = (message.from_email or "").lower()
    if event is None or event.origin != "local":
        return _link(db, message, None, "REPLY", _email(comp.get("ORGANIZER")))
    people, changed_any = [dict(p) for p in event.participants or []], False
    for answer in _people(comp):
        if answer["email"] != sender:
            continue  # an attendee answers for itself only
        for person in people:
            if person["email"] == answer["email"] and person["status"] != answer["status"]:
                person["status"], changed_any = answer["status"], True
    if changed_any:
        event.participants, event.updated_at = people, utcnow()
        calendar._emit(db, "event.updated", event, events.WORKER, reply_from=sender,
                       invitation_message_id=message.id)
    _link(db, message, event.id, "REPLY", event.organizer)


def _apply_cancel(db: Session, inbox: Inbox, message: Message, cal: icalendar.Calendar) -> None:
    master, changed = _split(cal)
    comp = master or (changed[0] if changed else None)
    if comp is None:
        return
    organizer = _email(comp.get("ORGANIZER")) or (message.from_email or "").lower()
    event = _event_by_uid(db, inbox.id, str(comp.get("UID")))
    if event is None or event.origin != "invitation" or event.organizer != organizer \
            or (message.from_email or "").lower() != organizer:
        return _link(db, message, event.id if event else None, "CANCEL", organizer)
    if master is None:
        zone = ZoneInfo(event.time_zone)
        keys = {_utc(c.get("RECURRENCE-ID").dt, zone).isoformat() for c in changed}
        event.exdates = sorted({*(event.exdates or []), *keys})
        event.overrides = {k: v for k, v in (event.overrides or {}).items() if k not in keys}
        event.updated_at = utcnow()
        calendar._emit(db, "event.updated", event, events.WORKER, invitation_message_id=message.id)
    else:
        event.status, event.sequence, event.updated_at = "cancelled", max(event.sequence, _fields(master)["sequence"]), utcnow()
        calendar._emit(db, "event.cancelled", event, events.WORKER, invitation_message_id=message.id)
        calendar.plan_reminders(db, event)
    _link(db, message, event.id, "CANCEL", organizer)


_APPLY = {"REQUEST": _apply_request, "REPLY": _apply_reply, "CANCEL": _apply_cancel}


def apply_message(db: Session, message_id: str) -> int:
    """Apply the iMIP parts of one received message; returns how many were applied."""
    message = db.get(Message, message_id)
    if message is None or message.direction != "inbound":
        return 0
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message_id))
    if not raw or (b"text/calendar" not in bytes(raw).lower() and b"application/ics" not in bytes(raw).lower()):
        return 0
    inbox = db.get(Inbox, message.inbox_id)
    applied, seen = 0, set()
    for method, cal in calendar_parts(bytes(raw)):
        first = next(iter(cal.walk("VEVENT")), None)
        key = (method, str(first.get("UID")) if first else "", str(first.get("SEQUENCE")) if first else "")
        if key in seen:
            continue  # Gmail sends the same invitation inline and as invite.ics
        seen.add(key)
        try:
            with db.begin_nested():
                _APPLY[method](db, inbox, message, cal)
            applied += 1
        except Exception:  # noqa: BLE001 - odd calendar data must not stop the reader
            log.warning("calendar: could not apply the %s in message %s", method, message_id, exc_info=True)
    return applied


# --- the reader of received mail --------------------------------------------------------------
def process_received(db: Session, *, batch: int = BATCH) -> int:
    """Apply the invitations among the next received messages and move the cursor, in the
    caller's transaction; returns how many events were read (call again while it returns batch)."""
    def apply(event: Event) -> None:
        if event.resource_id:
            apply_message(db, event.resource_id)
    return tailer.tail(db, CURSOR, apply, types=("message.received",), batch=batch)

