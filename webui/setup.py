"""Installing the web UI on the app: views, sign-in, CSRF, security headers, HTML errors."""
from __future__ import annotations

import datetime as dt
import importlib
import pkgutil

from flask import Flask, Response, g, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException

from appliance.errors import GentError, ValidationError
from webui import bp, is_web_request, nav
from webui.auth import current_principal, login_manager
from webui.errors import render_error, render_http_error, render_unexpected
from webui.store import reading

csrf = CSRFProtect()
# RFC 8058 one-click unsubscribe: providers POST without a form; the signed URL is the capability.
CSRF_EXEMPT = {"webui.unsubscribe_post"}

# No inline scripts or styles, nothing from other origins, never framed. A view may replace
# single directives for its own answer through g.csp (e.g. frame-src for a sandboxed mail view).
CSP = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "font-src": "'self'", "connect-src": "'self'", "object-src": "'none'", "base-uri": "'none'",
    "form-action": "'self'", "frame-ancestors": "'none'", "frame-src": "'none'",
}


def _import_views() -> None:
    import webui.views as package
    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)  # every area's views, and the top-level ones


def install(app: Flask) -> None:
    _import_views()
    settings = app.extensions["gentbox"].settings
    app.config.update(
        SESSION_COOKIE_NAME="gentbox_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings.web_session_ttl),
        # CSRF is checked on the web UI's forms only (below): the API takes bearer tokens, not cookies.
        WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    login_manager.init_app(app)
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.jinja_env.globals.setdefault("current_principal", current_principal)


@bp.before_request
def _check_csrf() -> None:
    _refuse_nul()
    if request.endpoint in CSRF_EXEMPT:
        return
    csrf.protect()  # no-op for GET/HEAD/OPTIONS; 400 (HTML, see below) without a valid token


def _refuse_nul() -> None:
    """NUL in a path part, query or form value is never meaningful, and PostgreSQL cannot store or
    compare it (a 500): refuse it first, as the API does."""
    values = list((request.view_args or {}).values())
    for multi in (request.args, request.form) if request.method == "POST" else (request.args,):
        for key, items in multi.lists():
            values += [key, *items]
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise ValidationError("The request contains a NUL character.",
                              fix="Remove the NUL character (%00) from the address or the form.")


@bp.after_app_request
def _security_headers(resp: Response) -> Response:
    if not is_web_request():
        return resp
    policy = {**CSP, **g.get("csp", {})}
    resp.headers["Content-Security-Policy"] = "; ".join(f"{k} {v}" for k, v in policy.items())
    resp.headers.setdefault("X-Frame-Options", "DENY")  # a sandboxed mail frame says SAMEORIGIN
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@bp.app_context_processor
def _layout() -> dict:
    if not is_web_request():
        return {}
    principal = current_principal()
    items = []
    if principal is not None:
        visible = nav.visible(principal)
        with reading() as db:
            items = [{"label": i.label, "endpoint": i.endpoint, "badge": nav.badge_value(i, db, principal)}
                     for i in visible]
    return {"nav_items": items, "principal": principal}


@bp.errorhandler(GentError)
def _gent_error(exc: GentError):  # noqa: ANN202
    return render_error(exc)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # noqa: ANN202
    return render_http_error(exc)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):  # noqa: ANN202
    return render_unexpected(exc)
