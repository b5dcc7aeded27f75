"""Public pages: sign-in (with the TOTP step), sign-out, the waitlist form and sign-up links."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for

from appliance.errors import GentError
from appliance.services import ratelimit
from appliance.services.identity import accounts, waitlist, websessions
from webui import bp, current_principal, nav, public_page
from webui.auth import (end_session, pending_second_factor, safe_next, set_pending_second_factor,
                        start_session)
from webui.errors import form_error
from webui.store import audit_failure, client_ip, counting, reading, settings, writing


@bp.route("/admin/")
@public_page
def home():  # noqa: ANN201
    """The first page the signed-in user's navigation offers (the dashboard once it exists)."""
    principal = current_principal()
    if principal is None:
        return redirect(url_for("webui.login"))
    items = nav.visible(principal)
    return redirect(url_for(items[0].endpoint if items else "webui.account"))


@bp.route("/login/", methods=["GET", "POST"])
@public_page
def login():  # noqa: ANN201
    target = safe_next(request.values.get("next")) or url_for("webui.home")
    if current_principal() is not None:
        return redirect(target)
    if request.method == "GET":
        return render_template("public/login.html", next=target, email="")
    email = request.form.get("email", "")
    try:
        with writing() as db, counting() as counters:
            secret, needs_code = websessions.sign_in(db, counters, settings(), email,
                                                     request.form.get("password", ""), client_ip())
    except GentError as exc:
        if exc.status == 401:
            audit_failure("webui.login.failed", email, exc)
        return form_error("public/login.html", exc, next=target, email=email)
    if needs_code:
        set_pending_second_factor(secret)
        return redirect(url_for("webui.login_code", next=target), code=303)
    start_session(secret)
    return redirect(target, code=303)


@bp.route("/login/code/", methods=["GET", "POST"])
@public_page
def login_code():  # noqa: ANN201
    target = safe_next(request.values.get("next")) or url_for("webui.home")
    pending = pending_second_factor()
    if pending is None:
        return redirect(url_for("webui.login", next=target))
    if request.method == "GET":
        return render_template("public/login_code.html", next=target)
    try:
        with writing() as db, counting() as counters:
            secret = websessions.complete_second_factor(db, counters, settings(), pending,
                                                        request.form.get("code", ""))
    except GentError as exc:
        if exc.status == 401:  # the pending sign-in expired: start again
            end_session()
            return form_error("public/login.html", exc, next=target, email="")
        return form_error("public/login_code.html", exc, next=target)
    start_session(secret)
    return redirect(target, code=303)


@bp.route("/logout/", methods=["GET", "POST"])
@public_page
def logout():  # noqa: ANN201
    if request.method == "GET":  # a link must not sign anyone out (CSRF): ask for a POST
        return render_template("public/logout.html")
    secret = end_session()
    if secret:
        with writing() as db:
            websessions.sign_out(db, secret)
    return render_template("public/message.html", title="Signed out",
                           message="You are signed out. The session has ended on the server too.",
                           link=url_for("webui.login"), link_label="Sign in again")


@bp.route("/waitlist/", methods=["GET", "POST"])
@public_page
def waitlist_request():  # noqa: ANN201
    if request.method == "GET":
        return render_template("public/waitlist.html", email="")
    email = request.form.get("email", "")
    try:
        with counting() as counters:  # the same per-IP limit as POST /v1/waitlist/
            ratelimit.hit(counters, f"ip:{client_ip()}:waitlist", settings().rate_limit_waitlist, 3600)
        with writing() as db:
            waitlist.request_access(db, email, client_ip())
    except GentError as exc:
        return form_error("public/waitlist.html", exc, email=email)
    # The same answer whatever the address's state: nothing to enumerate.
    return render_template("public/message.html", title="Request received",
                           message="Thanks. If your request is approved, a sign-up link is sent to "
                                   "that address.")


@bp.route("/signup/", methods=["GET", "POST"])
@public_page
def signup():  # noqa: ANN201
    email = request.values.get("email", "")
    token = request.values.get("signup_token", "")
    try:
        with reading() as db:
            entry, _ = waitlist.check_signup_token(db, email, token)
    except GentError as exc:
        return render_template("public/signup_invalid.html", message=exc.message, fix=exc.fix,
                               code=exc.code), exc.status
    if request.method == "GET":
        return render_template("public/signup.html", email=entry.email, token=token, name="")
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    if password != request.form.get("password_again", ""):
        return render_template("public/signup.html", email=entry.email, token=token, name=name,
                               error="The two passwords differ; type the same one twice."), 400
    try:
        with writing() as db:
            accounts.sign_up(db, entry.email, token, password, name)
    except GentError as exc:
        return form_error("public/signup.html", exc, email=entry.email, token=token, name=name)
    return render_template("public/message.html", title="Welcome to Gentbox",
                           message=f"The account {entry.email} is ready. Sign in to continue.",
                           link=url_for("webui.login"), link_label="Sign in")
