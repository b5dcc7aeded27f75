"""Typed errors as people see them: flash messages on forms, HTML error pages elsewhere."""
from __future__ import annotations

import logging

from flask import Response, flash, g, render_template, request
from werkzeug.exceptions import HTTPException

from appliance.errors import GentError, from_database_error

log = logging.getLogger("gentbox.webui")

_TITLES = {400: "Bad request", 401: "Please sign in", 403: "Not allowed", 404: "Not found",
           405: "Not allowed here", 409: "Conflict", 413: "Too large", 429: "Slow down",
           500: "Something went wrong", 503: "Temporarily unavailable"}


def message_of(exc: GentError) -> str:
    """The error's message and, when it has one, its fix: what the API says, for a person."""
    return f"{exc.message} {exc.fix}" if exc.fix else exc.message


def flash_error(exc: GentError) -> None:
    """Show a service's typed error as a flash message on the next page."""
    flash(message_of(exc), "error")


def render_error(exc: GentError, status: int | None = None) -> Response:
    """An HTML error page for a typed error, with its status and headers (Retry-After...)."""
    status = status or exc.status
    body = render_template("errors/error.html", status=status, title=_TITLES.get(status, "Error"),
                           message=exc.message, fix=exc.fix, code=exc.code,
                           request_id=g.get("request_id", ""))
    resp = Response(body, status=status, mimetype="text/html")
    for key, value in exc.headers.items():
        resp.headers[key] = value
    return resp


def render_http_error(exc: HTTPException) -> Response:
    """HTML for werkzeug's errors (unknown page, wrong method, missing CSRF token)."""
    status = exc.code or 500
    messages = {404: "There is no page here.", 405: "This page does not take that kind of request."}
    message = messages.get(status) or exc.description or "The request could not be handled."
    error = GentError(message, code=getattr(exc, "name", "error").lower().replace(" ", "_"))
    if status == 400 and "CSRF" in (exc.description or ""):
        error = GentError("The form expired or was not sent from this site.", code="invalid_request",
                          fix="Go back, reload the page and submit the form again.")
    resp = render_error(error, status)
    if status == 405 and getattr(exc, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp


def render_unexpected(exc: Exception) -> Response:
    """A database failure as its typed error; anything else logged with the request id, no details."""
    try:
        return render_error(from_database_error(exc))
    except Exception:  # noqa: BLE001 - not a database error: a 500 without details
        log.exception("unhandled error in %s %s (request %s)", request.method, request.path,
                      g.get("request_id"))
        return render_error(GentError("An unexpected error occurred; it was logged.", code="internal_error"), 500)


def form_error(template: str, exc: GentError, **context) -> Response:  # noqa: ANN003
    """Render a form again with the service's typed error above it, its status and headers."""
    resp = Response(render_template(template, error=message_of(exc), **context), status=exc.status,
                    mimetype="text/html")
    for key, value in exc.headers.items():
        resp.headers[key] = value
    return resp
