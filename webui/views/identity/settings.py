"""Settings pages (issue 27): the tenant's (owners and admins) and one per inbox. The forms call
the same service functions as /v1/settings/ and /v1/inboxes/{id}/settings/, so a bad value gets
the API's message (naming the field) as a flash, and nothing of that form is written."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from flask import flash, redirect, render_template, request, url_for

from appliance.models import MANAGER_ROLES, Inbox
from appliance.services.automation.event_types import REGISTRY
from appliance.services.identity import settings
from webui import bp, current_principal, login_required_page, manager_required, nav_item
from webui.store import attempt, reading

nav_item("Settings", "webui.tenant_settings_page", order=80, audience="tenant", roles=MANAGER_ROLES)


def _text(name: str) -> str:
    return request.form.get(name, "")


@bp.route("/admin/settings/")
@manager_required
def tenant_settings_page():  # noqa: ANN201
    with reading() as db:
        values = settings.get_tenant_settings(db, current_principal())
    return render_template("settings/tenant.html", values=values, zones=settings.zone_names())


@bp.route("/admin/settings/", methods=["POST"])
@manager_required
def tenant_settings_save():  # noqa: ANN201
    defaults = {"signature_text": _text("default_signature_text") or None,
                "auto_contacts": request.form.get("default_auto_contacts") == "on"}
    changes = {"name": _text("name"), "default_timezone": _text("default_timezone") or None,
               "notify_address": _text("notify_address").strip() or None,
               "llm_consent": request.form.get("llm_consent") == "on", "default_inbox_settings": defaults}
    with attempt() as work:
        settings.update_tenant_settings(work.db, current_principal(), changes)
    if work.ok:
        flash("Saved the tenant's settings.", "success")
    return redirect(url_for("webui.tenant_settings_page"), code=303)


@bp.route("/admin/inboxes/<inbox_id>/settings/")
@login_required_page
def inbox_settings_page(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        values = settings.get_inbox_settings(db, current_principal(), inbox_id)
        address = db.get(Inbox, values["inbox_id"]).address
    types = [t for t in REGISTRY.values() if not t.admin]
    return render_template("settings/inbox.html", values=values, address=address, types=types,
                           zones=settings.zone_names(), until=_local(values))


def _local(values: dict) -> str:
    """auto_reply.until as the datetime-local input shows it: in the inbox's zone, no offset."""
    until = values["auto_reply"]["until"]
    if not until:
        return ""
    local = dt.datetime.fromisoformat(until).astimezone(zoneinfo.ZoneInfo(values["default_timezone"]))
    return local.strftime("%Y-%m-%dT%H:%M")


@bp.route("/admin/inboxes/<inbox_id>/settings/", methods=["POST"])
@login_required_page
def inbox_settings_save(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox (or one not granted) is a 404 page, before any question
        settings.get_inbox_settings(db, current_principal(), inbox_id)
    reply = {"enabled": request.form.get("auto_reply_enabled") == "on", "subject": _text("auto_reply_subject"),
             "text_body": _text("auto_reply_text_body").replace("\r\n", "\n"),
             "until": _text("auto_reply_until").strip() or None}
    changes = {"display_name": _text("display_name"), "default_timezone": _text("default_timezone") or None,
               "signature_text": _text("signature_text").replace("\r\n", "\n"),
               "signature_html": _text("signature_html"), "auto_contacts": request.form.get("auto_contacts") == "on",
               "webhook_events": request.form.getlist("webhook_events"), "auto_reply": reply}
    with attempt() as work:
        settings.update_inbox_settings(work.db, current_principal(), inbox_id, changes)
    if work.ok:
        flash("Saved the inbox's settings.", "success")
    return redirect(url_for("webui.inbox_settings_page", inbox_id=inbox_id), code=303)
