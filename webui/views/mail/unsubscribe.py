"""RFC 8058 one-click unsubscribe (issue 16 point 2): GET /u/<token> shows a page asking to confirm
with a POST (a GET must never unsubscribe: mail scanners follow links); POST /u/<token> (a mail
provider's one-click, body List-Unsubscribe=One-Click, or the page's button) records it.

No CSRF token: the signed URL itself is the capability, and one-click POSTs come from providers
that never saw a form. A tampered or unknown token is a plain 404 that says nothing more."""
from __future__ import annotations

from flask import render_template

from appliance.errors import NotFoundError
from appliance.services.mail import broadcast
from webui import bp, public_page
from webui.store import reading, settings, store


@bp.route("/u/<token>", methods=["GET"])
@public_page
def unsubscribe_page(token: str):  # noqa: ANN201
    try:
        with reading() as db:
            _, address = broadcast.check_token(db, settings(), token)
    except NotFoundError:
        return render_template("public/unsubscribe.html", address=None, done=False), 404
    return render_template("public/unsubscribe.html", address=address, done=False, token=token)


@bp.route("/u/<token>", methods=["POST"])
@public_page
def unsubscribe_post(token: str):  # noqa: ANN201
    try:
        with store().session() as db:
            address = broadcast.unsubscribe(db, settings(), token)
    except NotFoundError:
        return render_template("public/unsubscribe.html", address=None, done=False), 404
    return render_template("public/unsubscribe.html", address=address, done=True), 200
