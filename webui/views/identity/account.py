"""Account settings: change the password, enrol or remove the TOTP second factor."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity import accounts, totp
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import confirmation
from webui.store import attempt, client_ip, reading, settings

nav_item("Account", "webui.account", order=900, audience="tenant")


@bp.route("/admin/account/")
@login_required_page
def account():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        enabled = totp.is_enabled(db, principal.user.id)
        pending = totp.pending_uri(db, settings(), principal.user) is not None
    return render_template("account/settings.html", totp_enabled=enabled, totp_pending=pending)


@bp.route("/admin/account/password/", methods=["POST"])
@login_required_page
def change_password():  # noqa: ANN201
    principal = current_principal()
    if request.form.get("new_password", "") != request.form.get("new_password_again", ""):
        flash("The two new passwords differ; type the same one twice.", "error")
        return redirect(url_for("webui.account"), code=303)
    with attempt(counted=True) as work:
        # Ends every other session of the user at once (web and API); this one stays.
        accounts.change_password(work.db, work.counters, settings(), principal.user, principal.session,
                                 request.form.get("current_password", ""),
                                 request.form.get("new_password", ""), client_ip())
    if work.failed:
        return redirect(url_for("webui.account"), code=303)
    flash("Password changed. Every other session of yours has been signed out.", "success")
    return redirect(url_for("webui.account"), code=303)


def _qr_data_uri(uri: str) -> str:
    """The otpauth URI as a QR code, made here (an SVG data URI: no request leaves the page)."""
    import segno  # only the TOTP enrolment page draws a QR code

    return segno.make(uri, error="m").svg_data_uri(scale=6, border=2)


@bp.route("/admin/account/totp/", methods=["GET"])
@login_required_page
def totp_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        enabled = totp.is_enabled(db, principal.user.id)
        uri = None if enabled else totp.pending_uri(db, settings(), principal.user)
    secret = uri.split("secret=", 1)[1].split("&", 1)[0] if uri else None
    return render_template("account/totp.html", enabled=enabled, uri=uri, secret=secret,
                           qr=_qr_data_uri(uri) if uri else None)


@bp.route("/admin/account/totp/start/", methods=["POST"])
@login_required_page
def totp_start():  # noqa: ANN201
    principal = current_principal()
    with attempt() as work:
        totp.begin_enrolment(work.db, settings(), principal.user)
    return redirect(url_for("webui.totp_page"), code=303)


@bp.route("/admin/account/totp/confirm/", methods=["POST"])
@login_required_page
def totp_confirm():  # noqa: ANN201
    principal = current_principal()
    with attempt(counted=True) as work:
        totp.confirm_enrolment(work.db, work.counters, settings(), principal.user, request.form.get("code", ""),
                               keep_session=principal.session)
    if work.failed:
        return redirect(url_for("webui.totp_page"), code=303)
    flash("Two-factor sign-in is on. Each sign-in now asks for a code from your app; every other "
          "session of yours has been signed out.", "success")
    return redirect(url_for("webui.account"), code=303)


@bp.route("/admin/account/totp/disable/", methods=["POST"])
@login_required_page
def totp_disable():  # noqa: ANN201
    principal = current_principal()
    asked = confirmation("Turn two-factor sign-in off? Your password alone will then sign you in.",
                         button="Turn it off", cancel_url=url_for("webui.account"))
    if asked is not None:
        return asked
    with attempt(counted=True) as work:
        totp.disable(work.db, work.counters, settings(), principal.user, request.form.get("code", ""))
    if work.failed:
        return redirect(url_for("webui.totp_page"), code=303)
    flash("Two-factor sign-in is off.", "success")
    return redirect(url_for("webui.account"), code=303)

