"""Calendar pages per inbox (issue 18): a week view and the coming agenda, creating and editing
events (the series, or one occurrence), deleting, the feed URL (its key shown once, rotatable),
and answering an invitation from the message view. The same services as /v1/calendar/."""
from __future__ import annotations

import datetime as dt

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.errors import ValidationError
from appliance.models import MANAGER_ROLES
from appliance.services.identity.auth import inbox_for
from appliance.services.workspace import calendar
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import inbox_home
from webui.store import attempt, reading, settings, writing

nav_item("Calendar", "webui.calendar_home", order=41, roles=MANAGER_ROLES)
AGENDA_DAYS = 30
FIELDS = ("title", "start", "end", "duration", "time_zone", "description", "location", "status", "recurrence",
          "calendar_id")


@bp.route("/admin/calendar/")
@manager_required
def calendar_home():  # noqa: ANN201
    return inbox_home("webui.calendar_week", "calendar/home.html")


def _monday(value: str | None, zone: dt.tzinfo) -> dt.date:
    try:
        day = dt.date.fromisoformat(value) if value else dt.datetime.now(zone).date()
    except ValueError:
        raise ValidationError("week: send a date like 2030-01-14", field="week") from None
    if not 1 < day.year < 9999:  # the week and the links to the ones around it stay inside the calendar
        raise ValidationError("week: send a date between the years 2 and 9998", field="week")
    return day - dt.timedelta(days=day.weekday())


@bp.route("/admin/calendar/<inbox_id>/")
@manager_required
def calendar_week(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    # A unit of work, not a read: the built-in calendars are made on the first visit. Another
    # tenant's inbox raises before anything is written (a 404 page).
    with writing() as db:
        inbox = inbox_for(db, principal, inbox_id)
        zone = calendar.inbox_zone(db, inbox)
        monday = _monday(request.args.get("week"), zone)
        start = dt.datetime.combine(monday, dt.time(), tzinfo=zone)
        week = calendar.expanded(db, inbox, start, start + dt.timedelta(days=7), zone=zone)
        now = dt.datetime.now(dt.timezone.utc)
        agenda = calendar.expanded(db, inbox, now, now + dt.timedelta(days=AGENDA_DAYS), zone=zone)
        cals = [calendar.calendar_to_dict(c) for c in calendar.list_calendars(db, principal, inbox.id)]
        address = inbox.address
    days = [(monday + dt.timedelta(days=i)) for i in range(7)]
    by_day = {d.isoformat(): [e for e in week if e["start"][:10] == d.isoformat()] for d in days}
    return render_template("calendar/week.html", inbox_id=inbox_id, address=address, zone=str(zone), days=days,
                           by_day=by_day, agenda=agenda, calendars=cals, monday=monday,
                           prev_week=(monday - dt.timedelta(days=7)).isoformat(),
                           next_week=(monday + dt.timedelta(days=7)).isoformat())


def _own(inbox_id: str) -> None:
    """Another tenant's inbox is a 404 page before anything else (no redirect naming its ids)."""
    with reading() as db:
        inbox_for(db, current_principal(), inbox_id)


def _form_input(creating: bool) -> calendar.EventInput:
    form = request.form
    values = {name: (form.get(name) or "").strip() or None for name in FIELDS}
    if not creating and "recurrence" in form:
        values["recurrence"] = (form.get("recurrence") or "").strip()
    emails = [line.strip() for line in (form.get("participants") or "").replace(",", "\n").splitlines()
              if line.strip()]
    return calendar.EventInput(**values, all_day=form.get("all_day") == "on",
                               participants=[{"email": e} for e in emails] if "participants" in form else None,
                               occurrence_start=(form.get("occurrence_start") or "").strip() or None,
                               given={"recurrence"} if not creating and "recurrence" in form else set())


@bp.route("/admin/calendar/<inbox_id>/events/", methods=["POST"])
@manager_required
def calendar_event_create(inbox_id: str):  # noqa: ANN201
    _own(inbox_id)
    with attempt() as work:
        event = calendar.create_event(work.db, settings(), current_principal(), inbox_id, _form_input(True))
        title = event.title
    if work.ok:
        flash(f"Created “{title}”.", "success")
    return redirect(url_for("webui.calendar_week", inbox_id=inbox_id, week=request.form.get("week") or None),
                    code=303)


@bp.route("/admin/calendar/<inbox_id>/events/<event_id>/")
@manager_required
def calendar_event_page(inbox_id: str, event_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inbox_for(db, principal, inbox_id)
        event = calendar.get_event(db, principal, inbox.id, event_id)
        shown = calendar.event_to_dict(event, calendar.inbox_zone(db, inbox))
        local = calendar.event_to_dict(event, calendar.zone_named(event.time_zone))
    return render_template("calendar/event.html", inbox_id=inbox_id, e=shown, local=local,
                           occurrence=request.args.get("occurrence") or "")


@bp.route("/admin/calendar/<inbox_id>/events/<event_id>/", methods=["POST"])
@manager_required
def calendar_event_update(inbox_id: str, event_id: str):  # noqa: ANN201
    _own(inbox_id)
    with attempt() as work:
        calendar.update_event(work.db, settings(), current_principal(), inbox_id, event_id, _form_input(False))
    if work.ok:
        flash("Saved; participants were sent the update.", "success")
    return redirect(url_for("webui.calendar_event_page", inbox_id=inbox_id, event_id=event_id), code=303)


@bp.route("/admin/calendar/<inbox_id>/events/<event_id>/delete/", methods=["POST"])
@manager_required
def calendar_event_delete(inbox_id: str, event_id: str):  # noqa: ANN201
    _own(inbox_id)
    occurrence = (request.form.get("occurrence_start") or "").strip() or None
    with attempt() as work:
        calendar.delete_event(work.db, settings(), current_principal(), inbox_id, event_id, occurrence)
    if work.ok:
        flash("Cancelled the occurrence." if occurrence else "Deleted the event.", "success")
        return redirect(url_for("webui.calendar_week", inbox_id=inbox_id), code=303)
    return redirect(url_for("webui.calendar_event_page", inbox_id=inbox_id, event_id=event_id), code=303)


@bp.route("/admin/calendar/<inbox_id>/events/<event_id>/respond/", methods=["POST"])
@manager_required
def calendar_event_respond(inbox_id: str, event_id: str):  # noqa: ANN201
    _own(inbox_id)
    with attempt() as work:
        calendar.respond(work.db, settings(), current_principal(), inbox_id, event_id,
                         request.form.get("response", ""), (request.form.get("comment") or "").strip() or None)
    if work.ok:
        flash(f"Answered {request.form.get('response')}; the organiser was sent your reply.", "success")
    message_id = request.form.get("message_id") or ""
    if message_id.startswith("msg_"):
        return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)
    return redirect(url_for("webui.calendar_event_page", inbox_id=inbox_id, event_id=event_id), code=303)


@bp.route("/admin/calendar/<inbox_id>/calendars/<calendar_id>/feed-key/", methods=["POST"])
@manager_required
def calendar_feed_key(inbox_id: str, calendar_id: str):  # noqa: ANN201
    _own(inbox_id)
    with attempt() as work:
        row, key = calendar.rotate_feed_key(work.db, current_principal(), inbox_id, calendar_id)
        name = row.name
    if work.failed:
        return redirect(url_for("webui.calendar_week", inbox_id=inbox_id), code=303)
    url = request.host_url.rstrip("/") + calendar.feed_path(calendar_id, key)
    body = render_template("calendar/feed.html", inbox_id=inbox_id, name=name, url=url)
    resp = Response(body, status=200, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"  # the key is in this page only
    return resp
