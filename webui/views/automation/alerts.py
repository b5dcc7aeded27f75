"""Alerts per inbox for a tenant's owners and admins (issue 15): create (a webhook's secret shown
once), disable and enable, rotate the secret, delete, send a test, and the delivery log with
response codes and errors and a Redeliver button. The same service functions as /v1/alerts/. A
secret is only ever in the body of the answer that made it: never in a redirect, a flash message
or a log line."""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.models import MANAGER_ROLES
from appliance.services.automation import alerts
from appliance.services.automation.catalogue import visible_types
from appliance.services.identity import inboxes
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading, settings

nav_item("Alerts", "webui.alerts_home", order=39, audience="tenant", roles=MANAGER_ROLES)
PAGE = 200
LOG = 100


@bp.route("/admin/alerts/")
@manager_required
def alerts_home():  # noqa: ANN201
    """The inboxes, each with its alerts page (the first one's shown when there is only one)."""
    return inbox_home("webui.alerts_page", "alerts/home.html")


@bp.route("/admin/inboxes/<inbox_id>/alerts/")
@manager_required
def alerts_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        rows = alerts.list_alerts(db, principal, inbox.id, limit=PAGE)
    return render_template("alerts/index.html", inbox=inbox, rows=[alerts.alert_to_dict(a) for a in rows],
                           types=visible_types(include_admin=True))


def _form_input() -> alerts.AlertInput:
    form = request.form
    kind = form.get("delivery_type", "webhook")
    retries = form.get("retries", "3")
    return alerts.AlertInput(
        events=form.getlist("events"), delivery_type=kind,
        target=form.get("target", "").strip() if kind == "webhook" else None,
        summary=form.get("summary", "").strip() if kind == "task" else None,
        retries=int(retries) if retries.isascii() and retries.isdigit() else -1, backoff=form.get("backoff", "exponential"))


def _secret_page(alert: dict, secret: str, address: str, verb: str) -> Response:
    body = render_template("alerts/secret.html", alert=alert, secret=secret, address=address, verb=verb)
    return Response(body, status=200, mimetype="text/html")


@bp.route("/admin/inboxes/<inbox_id>/alerts/", methods=["POST"])
@manager_required
def alert_create(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox is a 404 page, before anything else
        address = inboxes.get_inbox(db, current_principal(), inbox_id).address
    with attempt() as work:
        alert, secret = alerts.create_alert(work.db, settings(), current_principal(), inbox_id, _form_input())
        shown = alerts.alert_to_dict(alert)
    if work.failed or secret is None:
        if work.ok:
            flash("Created the task alert.", "success")
        return redirect(url_for("webui.alerts_page", inbox_id=inbox_id), code=303)
    return _secret_page(shown, secret, address, "created")


def _own(alert_id: str) -> str:
    """The caller's alert's inbox id; another tenant's alert is a 404 page (before any question)."""
    with reading() as db:
        return alerts.get_alert(db, current_principal(), alert_id).inbox_id


@bp.route("/admin/alerts/<alert_id>/enable/", methods=["POST"])
@manager_required
def alert_enable(alert_id: str):  # noqa: ANN201
    return _switch(alert_id, True, "is enabled: deliveries resume.")


@bp.route("/admin/alerts/<alert_id>/disable/", methods=["POST"])
@manager_required
def alert_disable(alert_id: str):  # noqa: ANN201
    return _switch(alert_id, False, "is disabled: nothing is delivered until you enable it.")


def _switch(alert_id: str, enabled: bool, done: str) -> Response:
    inbox_id = _own(alert_id)
    with attempt() as work:
        alerts.update_alert(work.db, settings(), current_principal(), alert_id, None, alerts.AlertInput(enabled=enabled))
    if work.ok:
        flash(f"The alert {alert_id} {done}", "success")
    return redirect(url_for("webui.alerts_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/alerts/<alert_id>/rotate/", methods=["POST"])
@manager_required
def alert_rotate(alert_id: str):  # noqa: ANN201
    inbox_id = _own(alert_id)
    asked = confirmation(f"Rotate the secret of {alert_id}? The new one is shown once; the current one keeps "
                         "signing for 24 hours, so update the receiver within that time.", button="Rotate")
    if asked is not None:
        return asked
    with attempt() as work:
        alert, secret = alerts.rotate_secret(work.db, settings(), current_principal(), alert_id)
        shown, address = alerts.alert_to_dict(alert), inboxes.get_inbox(work.db, current_principal(), inbox_id).address
    if work.failed:
        return redirect(url_for("webui.alerts_page", inbox_id=inbox_id), code=303)
    return _secret_page(shown, secret, address, "rotated")


@bp.route("/admin/alerts/<alert_id>/delete/", methods=["POST"])
@manager_required
def alert_delete(alert_id: str):  # noqa: ANN201
    inbox_id = _own(alert_id)
    asked = confirmation(f"Delete the alert {alert_id}? Its pending deliveries are dropped; this cannot be "
                         "undone.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        alerts.delete_alert(work.db, current_principal(), alert_id)
    if work.ok:
        flash(f"Deleted the alert {alert_id}.", "success")
    return redirect(url_for("webui.alerts_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/alerts/<alert_id>/test/", methods=["POST"])
@manager_required
def alert_test(alert_id: str):  # noqa: ANN201
    _own(alert_id)
    with attempt() as work:
        alerts.request_test(work.db, current_principal(), alert_id)
    if work.ok:
        flash("A test delivery is queued; it shows in the log below once sent.", "success")
    return redirect(url_for("webui.alert_page", alert_id=alert_id), code=303)


@bp.route("/admin/alerts/<alert_id>/")
@manager_required
def alert_page(alert_id: str):  # noqa: ANN201
    principal = current_principal()
    status = request.args.get("status") or None
    with reading() as db:
        alert = alerts.get_alert(db, principal, alert_id)
        inbox = inboxes.get_inbox(db, principal, alert.inbox_id)
        log = alerts.list_deliveries(db, principal, alert_id, status=status, limit=LOG)
        shown = alerts.alert_to_dict(alert)
    return render_template("alerts/detail.html", alert=shown, inbox=inbox, status=status,
                           log=[alerts.delivery_to_dict(d) for d in log])


@bp.route("/admin/alerts/<alert_id>/deliveries/<delivery_id>/retry/", methods=["POST"])
@manager_required
def alert_redeliver(alert_id: str, delivery_id: str):  # noqa: ANN201
    _own(alert_id)
    with attempt() as work:
        alerts.retry_delivery(work.db, current_principal(), alert_id, delivery_id)
    if work.ok:
        flash(f"Delivery {delivery_id} is queued to be sent again now.", "success")
    return redirect(url_for("webui.alert_page", alert_id=alert_id), code=303)
