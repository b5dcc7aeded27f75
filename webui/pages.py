"""Small helpers views share: confirmation of destructive actions, safe redirects back."""
from __future__ import annotations

from flask import Response, redirect, render_template, request, url_for

from appliance.services.identity import inboxes
from webui.auth import current_principal, safe_next
from webui.store import reading


def confirmation(question: str, *, button: str = "Yes, continue", cancel_url: str | None = None,
                 details: str | None = None) -> Response | None:
    """None when the form said confirm=yes; otherwise a page asking first, whose form re-posts the
    same fields with confirm=yes (so every destructive action works without JavaScript)."""
    if request.form.get("confirm") == "yes":
        return None
    fields = [(k, v) for k, values in request.form.lists() for v in values if k not in ("csrf_token", "confirm")]
    body = render_template("confirm.html", question=question, details=details, button=button,
                           action=request.path, fields=fields,
                           cancel_url=safe_next(cancel_url) or request.referrer or url_for("webui.home"))
    return Response(body, status=200, mimetype="text/html")


def back(default_endpoint: str, **values: str) -> Response:
    """Redirect to the form's `next` field when it is a same-site path, else to the default page."""
    return redirect(safe_next(request.form.get("next")) or url_for(default_endpoint, **values), code=303)


def inbox_home(page_endpoint: str, template: str) -> Response:
    """An area's home (alerts, contacts, tasks, calendar): the caller's inboxes to pick from, or
    straight to the only one's page."""
    with reading() as db:
        live = inboxes.list_inboxes(db, current_principal(), after=None, limit=1000)
    if len(live) == 1:
        return redirect(url_for(page_endpoint, inbox_id=live[0].id), code=303)
    return Response(render_template(template, inboxes=live), mimetype="text/html")
