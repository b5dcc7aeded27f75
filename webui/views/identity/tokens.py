"""Agent tokens for a tenant's owners and admins: create with scopes and the scopes held for
approval, the raw token shown once, pause, resume, rotate, revoke, last used. The same service
functions as /v1/tokens/. A raw token is only ever in the body of the answer that made it: never
in a redirect, a flash message (the session cookie) or a log line."""
from __future__ import annotations

import datetime as dt

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.clock import utcnow
from appliance.errors import GentError, ValidationError
from appliance.services.identity import inboxes, tokens
from appliance.services.identity.auth import SCOPES
from webui import bp, current_principal, flash_error, manager_required, nav_item
from webui.pages import confirmation
from webui.store import reading, writing

nav_item("Tokens", "webui.tokens_page", order=38, audience="tenant", roles=("owner", "admin"))
PAGE = 500
EXPIRY_DAYS = {"": None, "30": 30, "90": 90, "365": 365}


@bp.route("/admin/tokens/")
@manager_required
def tokens_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        live = inboxes.list_inboxes(db, principal, after=None, limit=PAGE)
        rows = tokens.list_tokens(db, principal, None, after=None, limit=PAGE)
    addresses = {i.id: i.address for i in live}
    return render_template("tokens/index.html", rows=rows, addresses=addresses, inboxes=live, scopes=SCOPES,
                           now=utcnow(), selected=request.args.get("inbox_id", ""))


def _expiry(value: str) -> dt.datetime | None:
    if value not in EXPIRY_DAYS:
        raise ValidationError("Pick an expiry from the list.", field="expires")
    days = EXPIRY_DAYS[value]
    return None if days is None else utcnow() + dt.timedelta(days=days)


def _issued(issued: tokens.IssuedToken, address: str, verb: str) -> Response:
    body = render_template("tokens/issued.html", token=issued.token, raw=issued.raw, address=address, verb=verb)
    return Response(body, status=200, mimetype="text/html")


@bp.route("/admin/tokens/", methods=["POST"])
@manager_required
def token_create():  # noqa: ANN201
    form = request.form
    try:
        with writing() as db:
            issued = tokens.create_token(db, current_principal(), inbox_id=form.get("inbox_id", ""),
                                         label=form.get("label", ""), scopes=form.getlist("scopes"),
                                         requires_approval=form.getlist("requires_approval"),
                                         expires_at=_expiry(form.get("expires", "")))
            address = inboxes.get_inbox(db, current_principal(), issued.token.inbox_id).address
    except GentError as exc:
        flash_error(exc)
        return redirect(url_for("webui.tokens_page"), code=303)
    return _issued(issued, address, "created")


def _own(token_id: str) -> str:
    """The caller's token's label (or id); another tenant's is a 404 page (before any question)."""
    with reading() as db:
        token = tokens.get_token(db, current_principal(), token_id)
    return f"“{token.label}”" if token.label else token.id


def _act(token_id: str, action: str, done: str):  # noqa: ANN202
    name = _own(token_id)
    try:
        with writing() as db:
            tokens.update_token(db, current_principal(), token_id, action=action, scopes=None)
    except GentError as exc:
        flash_error(exc)
    else:
        flash(f"The token {name} {done}", "success")
    return redirect(url_for("webui.tokens_page"), code=303)


@bp.route("/admin/tokens/<token_id>/pause/", methods=["POST"])
@manager_required
def token_pause(token_id: str):  # noqa: ANN201
    return _act(token_id, "pause", "is paused: its calls are refused until you resume it.")


@bp.route("/admin/tokens/<token_id>/resume/", methods=["POST"])
@manager_required
def token_resume(token_id: str):  # noqa: ANN201
    return _act(token_id, "resume", "is active again.")


@bp.route("/admin/tokens/<token_id>/rotate/", methods=["POST"])
@manager_required
def token_rotate(token_id: str):  # noqa: ANN201
    name = _own(token_id)
    asked = confirmation(f"Rotate the token {name}? Its current secret stops working at once; the new one is "
                         "shown once.", button="Rotate")
    if asked is not None:
        return asked
    try:
        with writing() as db:
            issued = tokens.update_token(db, current_principal(), token_id, action="rotate", scopes=None)
            address = inboxes.get_inbox(db, current_principal(), issued.token.inbox_id).address
    except GentError as exc:
        flash_error(exc)
        return redirect(url_for("webui.tokens_page"), code=303)
    return _issued(issued, address, "rotated")


@bp.route("/admin/tokens/<token_id>/revoke/", methods=["POST"])
@manager_required
def token_revoke(token_id: str):  # noqa: ANN201
    name = _own(token_id)
    asked = confirmation(f"Revoke the token {name}? Its agent is refused from its very next call; this cannot "
                         "be undone.", button="Revoke")
    if asked is not None:
        return asked
    try:
        with writing() as db:
            tokens.revoke_token(db, current_principal(), token_id)
    except GentError as exc:
        flash_error(exc)
    else:
        flash(f"Revoked the token {name}.", "success")
    return redirect(url_for("webui.tokens_page"), code=303)
