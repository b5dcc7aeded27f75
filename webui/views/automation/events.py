"""The tenant's events for its owners and admins: newest first, a page at a time (cursor), with a
filter by type. The same event table as GET /v1/events/ (which walks one inbox, oldest first)."""
from __future__ import annotations

from flask import render_template, request

from appliance.models import MANAGER_ROLES
from appliance.services.automation import events
from appliance.services.identity import inboxes, members
from webui import bp, current_principal, manager_required, nav_item
from webui.store import reading

nav_item("Events", "webui.events_page", order=70, audience="tenant", roles=MANAGER_ROLES)
PAGE = 50


@bp.app_template_filter("utc")
def utc(value: str | None) -> str:
    """An ISO 8601 UTC time of the API's objects ("2026-11-29T01:38:37Z") as people read it."""
    return value.replace("T", " ").replace("Z", " UTC") if value else ""


@bp.route("/admin/events/")
@manager_required
def events_page():  # noqa: ANN201
    principal = current_principal()
    before = request.args.get("before") or None
    kind = request.args.get("type") or None
    types = events.parse_types([kind] if kind else None, field="type")  # a registered type, else 400
    with reading() as db:
        rows = events.list_tenant_events(db, principal.tenant_id, before=before, types=types, limit=PAGE + 1)
        addresses = {i.id: i.address for i in inboxes.list_inboxes(db, principal, after=None, limit=1000)}
        people = {u.id: u.email for u in members.list_users(db, principal)}
    page = rows[:PAGE]
    return render_template("events/index.html", rows=[events.event_to_dict(e) for e in page],
                           addresses=addresses, people=people, kind=kind, kinds=events.EVENT_TYPES, before=before,
                           older=page[-1].id if len(rows) > PAGE else None)
