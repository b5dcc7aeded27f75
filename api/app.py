"""The app factory: one Flask app serving the /v1/ API, /auth/, and (later) the admin web UI."""
from __future__ import annotations

import json
import logging

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from api.framework import count_by_ip, error_response
from api.metrics import install_metrics
from api.request_log import install_request_logging
from appliance.config import Settings, load_settings
from appliance.db import Store
from appliance.errors import (GentError, InvalidRequestError, MethodNotAllowedError, NotFoundError,
                              PayloadTooLargeError, RateLimitedError, from_database_error, GentError as _Base)
from appliance.ids import new_id
from appliance.services import register_handlers
from appliance.services.ratelimit import Budgets
from appliance.services.identity.auth import TokenCache
from webui import init_app as init_webui, is_web_request

log = logging.getLogger("gentbox.web")


def create_app(settings: Settings | None = None, store: Store | None = None) -> Flask:
    """Build the web app for these settings (loaded from the environment when not given)."""
    settings = settings or load_settings()
    register_handlers()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=settings.max_body_bytes,
                      JSON_SORT_KEYS=False)
    app.extensions["gentbox"] = store or Store(settings)
    app.extensions["gentbox_tokens"] = TokenCache()  # this process's agent tokens (issue 26)
    app.extensions["gentbox_budgets"] = Budgets()  # this process's per-token rate-limit slices (issue 26)
    if settings.proxy_hops:
        # Behind nginx every request comes from 127.0.0.1: without this, the per-IP limits (failed
        # sign-ins, the waitlist, public endpoints) would be one bucket for the whole internet.
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]

    from api.routes import register
    register(app)
    from api import references  # after every route module: one reference per declared resource
    app.register_blueprint(references.blueprint())
    _install_conventions(app)
    install_metrics(app)  # GET /metrics, and HTTP latency by route
    install_request_logging(app)  # request ids on log records, one access line per request
    init_webui(app)  # the web UI: HTML pages, its own errors, headers, CSRF and sign-in throttling
    return app


def _install_conventions(app: Flask) -> None:
    @app.before_request
    def _request_id() -> None:
        g.request_id = new_id("req")

    @app.after_request
    def _headers(resp):  # noqa: ANN001
        rate = g.get("rate")
        if rate is None and "X-RateLimit-Limit" not in resp.headers and not is_web_request():
            # No route counted this answer (unknown path, wrong method): count it per IP, so every
            # answer carries the X-RateLimit-* headers and probing paths is limited too.
            try:
                rate = count_by_ip()
            except RateLimitedError as exc:
                resp = error_response(exc)
            except Exception:  # noqa: BLE001 - the store is down: answer without the headers
                log.warning("could not count request %s", g.get("request_id"), exc_info=True)
        if 300 <= resp.status_code < 400 and resp.mimetype == "text/html" and not is_web_request():
            # Routing's redirect to the path with its trailing slash: kept, but in JSON like every answer.
            resp.set_data(json.dumps({"location": resp.location}))
            resp.mimetype = "application/json"
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if rate is not None and "X-RateLimit-Limit" not in resp.headers:  # a 429 brings its own five
            resp.headers.extend(rate.headers())
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(GentError)
    def _gent_error(exc: GentError):  # noqa: ANN202
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # noqa: ANN202
        if is_web_request():  # an unknown page or wrong method under the web UI's paths: HTML
            from webui.errors import render_http_error
            return render_http_error(exc)
        mapped: _Base
        if exc.code == 404:
            mapped = NotFoundError("No such endpoint.", fix="See GET /v1/openapi.json for every path.")
        elif exc.code == 405:
            mapped = MethodNotAllowedError(
                headers={"Allow": ", ".join(exc.valid_methods or [])} if getattr(exc, "valid_methods", None) else None)
        elif exc.code == 413:
            mapped = PayloadTooLargeError(fix=f"Keep the body under {request.max_content_length} bytes.")
        else:
            mapped = InvalidRequestError(exc.description or "The request is invalid.")
        return error_response(mapped)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # noqa: ANN202
        try:
            mapped = from_database_error(exc)
            log.warning("database error in %s %s (request %s): %s", request.method, request.path,
                        g.get("request_id"), exc)
            return error_response(mapped)
        except Exception:  # noqa: BLE001 - anything not mapped is a 500 without details
            log.exception("unhandled error in %s %s (request %s)", request.method, request.path,
                          g.get("request_id"))
            body = GentError("An unexpected error occurred; it was logged.", code="internal_error")
            body.status = 500
            return error_response(body)
