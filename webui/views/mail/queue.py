"""The outbound queue: waiting (queued, deferred, being delivered) and failed messages with their
last SMTP reply, attempts and next attempt; retry now and cancel (confirmed). Operators see the
whole box's queue, tenant owners and admins their tenant's (appliance/services/mail/mailqueue.py)."""
from __future__ import annotations

from flask import flash, render_template, request

from appliance.errors import GentError
from appliance.services.mail import mailqueue
from webui import bp, current_principal, flash_error, manager_required, nav_item
from webui.pages import back, confirmation
from webui.store import reading, writing

nav_item("Queue", "webui.queue", order=70, roles=("owner", "admin"))


@bp.route("/admin/queue/")
@manager_required
def queue():  # noqa: ANN201
    view = request.args.get("view", "waiting")
    with reading() as db:
        entries = mailqueue.list_queue(db, current_principal(), view=view)
    return render_template("queue/index.html", entries=entries, view=view, views=mailqueue.VIEWS)


@bp.route("/admin/queue/<queue_id>/retry/", methods=["POST"])
@manager_required
def queue_retry(queue_id: str):  # noqa: ANN201
    try:
        with writing() as db:
            row = mailqueue.retry_now(db, current_principal(), queue_id)
            domain = row.domain
        flash(f"The mail to {domain} is due now: the worker tries it on its next pass.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.queue")


@bp.route("/admin/queue/<queue_id>/cancel/", methods=["POST"])
@manager_required
def queue_cancel(queue_id: str):  # noqa: ANN201
    asked = confirmation("Cancel this message's delivery? Its undelivered recipients are marked failed and it "
                         "is never tried again.", button="Cancel delivery")
    if asked is not None:
        return asked
    try:
        with writing() as db:
            row = mailqueue.cancel(db, current_principal(), queue_id)
            domain = row.domain
        flash(f"Cancelled the delivery to {domain}: its recipients are marked failed.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.queue")
