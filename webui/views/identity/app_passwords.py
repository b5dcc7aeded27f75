"""App passwords for the signed-in person's mail clients (IMAP, SMTP submission): create one for
an inbox (the secret shown once, on the page that made it, never in a redirect or flash), see
when each was last used, revoke. The same service functions as /v1/app-passwords/."""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.services.identity import app_passwords, inboxes
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import confirmation
from webui.store import attempt, reading, settings

nav_item("App passwords", "webui.app_passwords_page", order=895, audience="tenant")
PAGE = 200


def _client_settings() -> dict:
    s = settings()
    return {"host": s.hostname, "imap_port": getattr(s, "imaps_port", None), "submission_port": s.submission_port,
            "submissions_port": s.submissions_port}


@bp.route("/admin/app-passwords/")
@login_required_page
def app_passwords_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        live = inboxes.list_inboxes(db, principal, after=None, limit=PAGE)
        rows = app_passwords.list_own(db, principal, after=None, limit=PAGE)
    addresses = {i.id: i.address for i in live}
    return render_template("app_passwords/index.html", rows=rows, addresses=addresses, inboxes=live,
                           client=_client_settings())


@bp.route("/admin/app-passwords/", methods=["POST"])
@login_required_page
def app_password_create():  # noqa: ANN201
    with attempt() as work:
        issued = app_passwords.create(work.db, current_principal(), inbox_id=request.form.get("inbox_id", ""),
                                      label=request.form.get("label", ""))
        address = inboxes.get_inbox(work.db, current_principal(), issued.row.inbox_id).address
    if work.failed:
        return redirect(url_for("webui.app_passwords_page"), code=303)
    body = render_template("app_passwords/issued.html", row=issued.row, raw=issued.raw, address=address,
                           client=_client_settings())
    return Response(body, status=200, mimetype="text/html")


@bp.route("/admin/app-passwords/<app_password_id>/revoke/", methods=["POST"])
@login_required_page
def app_password_revoke(app_password_id: str):  # noqa: ANN201
    asked = confirmation("Revoke this app password? The mail client using it is refused at its next sign-in.",
                         button="Revoke")
    if asked is not None:
        return asked
    with attempt() as work:
        app_passwords.revoke(work.db, current_principal(), app_password_id)
    if work.ok:
        flash("Revoked the app password.", "success")
    return redirect(url_for("webui.app_passwords_page"), code=303)
