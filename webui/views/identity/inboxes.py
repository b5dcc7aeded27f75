"""Inboxes for a tenant's owners and admins: create one on a verified domain, pause, resume, delete,
with their message counts. The same service functions as /v1/inboxes/."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from appliance.errors import GentError, ValidationError
from appliance.services.domains import domains
from appliance.services.identity import inboxes
from webui import bp, current_principal, flash_error, manager_required, nav_item
from webui.pages import confirmation
from webui.store import reading, writing

nav_item("Inboxes", "webui.inboxes_page", order=35, audience="tenant", roles=("owner", "admin"))
PAGE = 200  # a tenant's inboxes on one page; the API pages through more with its cursor


@bp.route("/admin/inboxes/")
@manager_required
def inboxes_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        rows = inboxes.list_inboxes(db, principal, after=None, limit=PAGE)
        numbers = inboxes.counts(db, [i.id for i in rows])
        verified = [d.name for d in domains.list_domains(db, principal) if d.status == "verified"]
    items = [inboxes.inbox_to_dict(i, *numbers.get(i.id, (0, 0))) for i in rows]
    return render_template("inboxes/index.html", items=items, verified=verified,
                           has_mail="webui.mail_inbox" in current_app.view_functions)


@bp.route("/admin/inboxes/", methods=["POST"])
@manager_required
def inbox_create():  # noqa: ANN201
    form = request.form
    local, domain = form.get("local_part", "").strip(), form.get("domain", "").strip()
    try:
        if not local or not domain:
            raise ValidationError("Give the address's name and pick one of your verified domains.", field="address")
        with writing() as db:
            inbox = inboxes.create_inbox(db, current_principal(), f"{local}@{domain}",
                                         form.get("display_name", ""), form.get("default_timezone") or None)
            address = inbox.address
    except GentError as exc:
        flash_error(exc)
    else:
        flash(f"Created the inbox {address}. Next, give its agent a token.", "success")
    return redirect(url_for("webui.inboxes_page"), code=303)


def _own(inbox_id: str) -> str:
    """The caller's inbox's address; another tenant's is a 404 page (before any question)."""
    with reading() as db:
        return inboxes.get_inbox(db, current_principal(), inbox_id).address


def _set_status(inbox_id: str, status: str, done: str):  # noqa: ANN202
    try:
        with writing() as db:
            inbox = inboxes.update_inbox(db, current_principal(), inbox_id, {"status": status})
            address = inbox.address
    except GentError as exc:
        flash_error(exc)
    else:
        flash(f"{address} {done}", "success")
    return redirect(url_for("webui.inboxes_page"), code=303)


@bp.route("/admin/inboxes/<inbox_id>/pause/", methods=["POST"])
@manager_required
def inbox_pause(inbox_id: str):  # noqa: ANN201
    address = _own(inbox_id)
    asked = confirmation(f"Pause {address}? Senders are asked to retry later and it sends nothing until you resume it.", button="Pause")
    if asked is not None:
        return asked
    return _set_status(inbox_id, "paused", "is paused.")


@bp.route("/admin/inboxes/<inbox_id>/resume/", methods=["POST"])
@manager_required
def inbox_resume(inbox_id: str):  # noqa: ANN201
    _own(inbox_id)
    return _set_status(inbox_id, "active", "is active again.")


@bp.route("/admin/inboxes/<inbox_id>/delete/", methods=["POST"])
@manager_required
def inbox_delete(inbox_id: str):  # noqa: ANN201
    address = _own(inbox_id)
    asked = confirmation(f"Delete the inbox {address}? Its tokens are revoked at once and the address is "
                         "freed; its mail is kept until retention removes it.", button="Delete inbox")
    if asked is not None:
        return asked
    try:
        with writing() as db:
            inboxes.delete_inbox(db, current_principal(), inbox_id)
    except GentError as exc:
        flash_error(exc)
    else:
        flash(f"Deleted the inbox {address}; its tokens are revoked.", "success")
    return redirect(url_for("webui.inboxes_page"), code=303)
