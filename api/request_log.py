"""Each web request: its id on every log record made while it runs, and one access line at the end.

The access line carries the method, the URL rule (never the query string: sign-up links carry
their token there), the status and the duration; headers and bodies are never logged.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from appliance.logging_setup import set_log_fields

log = logging.getLogger("gentbox.access")


def install_request_logging(app: Flask) -> None:
    """Tag log records with the request id; log one line per answered request."""
    @app.before_request
    def _bind_request_id() -> None:
        g.log_started = time.perf_counter()
        set_log_fields(request_id=g.get("request_id"), message_id=None, queue_id=None)

    @app.after_request
    def _access_line(resp: Response) -> Response:
        started = g.get("log_started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            log.info("%s %s %d %.1f ms", request.method, route, resp.status_code,
                     (time.perf_counter() - started) * 1000)
        return resp

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        set_log_fields(request_id=None)
