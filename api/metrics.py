"""GET /metrics (Prometheus text format) and the HTTP latency it reports.

/metrics is not an API operation (no JSON, no user tokens): it is answered by a before_request
hook, outside the API's route table, with its own guard. With GENTBOX_METRICS_TOKEN set it needs
`Authorization: Bearer <that token>`; without one it answers only clients on loopback that did not
come through a proxy (nginx adds X-Forwarded-For, and its connection comes from loopback too).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time

from flask import Flask, Response, current_app, g, request

from appliance.errors import ForbiddenError, UnauthorizedError
from appliance.metrics import HttpHistogram, StoreMetrics, render

PATH = "/metrics"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def install_metrics(app: Flask) -> None:
    """Serve /metrics and time every request of this app by route."""
    http = HttpHistogram()
    app.extensions["gentbox_http_metrics"] = http
    app.extensions["gentbox_store_metrics"] = StoreMetrics()

    @app.before_request
    def _metrics_start() -> Response | None:
        g.metrics_started = time.perf_counter()
        if request.path != PATH:
            return None
        if request.method not in ("GET", "HEAD"):
            return None  # routing answers 404/405 as for any unknown path
        _guard(app.extensions["gentbox"].settings.metrics_token)
        return _metrics_response()

    @app.after_request
    def _metrics_observe(resp: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else (
                PATH if request.path == PATH else "unmatched")  # unknown paths: one series, not one each
            method = request.method if request.method in METHODS else "OTHER"
            http.observe((method, rule), time.perf_counter() - started)
        return resp


def _guard(token: str) -> None:
    if token:
        kind, _, given = request.headers.get("Authorization", "").partition(" ")
        # Compare digests, in constant time: neither the token's length nor its prefix leaks.
        if kind.lower() != "bearer" or not hmac.compare_digest(
                hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest()):
            raise UnauthorizedError("/metrics needs the metrics token.",
                                    fix="Send 'Authorization: Bearer <GENTBOX_METRICS_TOKEN>'.",
                                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback or any(h in request.headers for h in PROXY_HEADERS):
        raise ForbiddenError("/metrics answers only local clients when no metrics token is set.",
                             fix="Scrape from this host, or set GENTBOX_METRICS_TOKEN (or _FILE) and send it "
                                 "as a bearer token.")


def _metrics_response() -> Response:
    store = current_app.extensions["gentbox"]
    heartbeat = current_app.extensions.get("gentbox_heartbeat")
    text = render(store, current_app.extensions["gentbox_store_metrics"], current_app.extensions["gentbox_http_metrics"],
                  own_heartbeat=heartbeat.id if heartbeat is not None else None)
    return Response(text, mimetype="text/plain", content_type="text/plain; version=0.0.4; charset=utf-8")

