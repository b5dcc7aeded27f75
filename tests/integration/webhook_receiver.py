"""A real HTTP receiver on loopback for webhook tests, and alerts made the way the store keeps them.

The receiver verifies every request with the `standardwebhooks` package (a peer implementation of
Standard Webhooks 1.0, not our code) and records what it answered; `behave` decides the answer.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import standardwebhooks

from appliance import security
from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Alert


@dataclass
class Hit:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int


@dataclass
class Receiver:
    secrets: list[str]
    behave: Callable[[int, "Hit"], tuple[int, dict[str, str], float]] | None = None
    hits: list[Hit] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: "ssl.SSLContext | None" = None  # serve https with this context
    server_names: list = field(default_factory=list)  # the TLS server names (SNI) clients sent

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                hit = Hit(headers.get("webhook-id", ""), headers, body, receiver.verify(body, headers), 0)
                with receiver.lock:
                    number = len(receiver.hits)
                    receiver.hits.append(hit)
                status, extra, delay = receiver.behave(number, hit) if receiver.behave else (200, {}, 0.0)
                if delay:
                    time.sleep(delay)  # the receiver is slow on purpose (a timeout); not a test sleep
                hit.answered = status
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address) -> bool:  # noqa: ANN001
                with receiver.lock:
                    receiver.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        """True when the standardwebhooks library accepts the request with every expected secret."""
        try:
            for secret in self.secrets:
                standardwebhooks.Webhook(secret).verify(body, headers)
        except standardwebhooks.WebhookVerificationError:
            return False
        return True

    def accepted(self) -> Counter:
        """webhook-id -> how many times it was answered with a 2xx."""
        with self.lock:
            return Counter(h.webhook_id for h in self.hits if 200 <= h.answered < 300)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_alert(db, settings, *, tenant_id: str, inbox_id: str, target: str | None, events: list[str],
               secret: str | None = None, retries: int = 3, backoff: str = "exponential",
               delivery_type: str = "webhook", task_summary: str | None = None,
               filter_: dict | None = None) -> tuple[Alert, str]:
    """An alert row as the alerts service stores it (the secret sealed with the appliance key)."""
    secret = secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    now = utcnow() - dt.timedelta(seconds=1)
    alert = Alert(id=new_id("alr"), tenant_id=tenant_id, inbox_id=inbox_id, events=events,
                  delivery_type=delivery_type, target=target, task_summary=task_summary, filter=filter_ or {},
                  retries=retries, backoff=backoff, enabled=True, created_at=now, updated_at=now)
    if delivery_type == "webhook":
        alert.secret_sealed = security.seal(settings.secret_key, "webhook-secrets", secret.encode(), alert.id)
    db.add(alert)
    db.flush()
    return alert, secret
