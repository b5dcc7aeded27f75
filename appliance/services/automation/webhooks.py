"""Sending one webhook: Standard Webhooks 1.0 signing, the address checks, the POST, its outcome.

Signing (https://www.standardwebhooks.com/, version 1.0): the body is
`{"type", "timestamp", "data": <event as the API renders it>}`; the headers are `webhook-id`
(the delivery's id, the same on every retry of one event to one alert), `webhook-timestamp`
(Unix seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
for each live secret, space separated (two during the 24 h after a rotation). A secret is
`whsec_<base64 key>`; the key is the base64-decoded part, as every Standard Webhooks library reads it.

Dialling (no SSRF): the target's host is resolved with the appliance's resolver at every attempt;
when any of its addresses is not public (loopback, private, link-local, multicast, the metadata
address, the appliance's own: appliance/addresses.py) the attempt is refused without a connection,
unless the operator set `webhook_allow_private`. The connection then goes to the checked address
itself, never to a second resolution of the name (DNS rebinding), with the name as Host header
and TLS server name. Redirects are not followed: a 3xx is a failed attempt. Connections are kept
alive between attempts, per host name and checked address (`Clients`): a new connection per
POST cost the sending threads more than half their time.

The retry schedule and what an outcome means for a delivery and its alert are decided here too
(`next_attempt`, `Result`), so the dispatcher only records them.
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from appliance.addresses import is_public, own_addresses
from appliance.config import Settings
from appliance.dns import Outcome, Resolver

if TYPE_CHECKING:  # httpx is imported where a request is made: the web process seldom needs it
    import httpx

SECRET_PREFIX = "whsec_"
# Exponential backoff (contract section 8): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
EXPONENTIAL = (5, 300, 1800, 7200, 18000, 36000, 36000)
FIXED_INTERVAL = 300  # `fixed`: every 5 minutes
MAX_RETRY_AFTER = 36000  # a Retry-After longer than the longest step is capped to it
FAILING_DISABLES_AFTER = dt.timedelta(days=5)
USER_AGENT = "Gentbox-Webhooks/1.0"


class TargetRefused(Exception):
    """The target may not be dialled (a non-public address, no address, a bad URL)."""


@dataclass(frozen=True)
class Result:
    """What one attempt came to: `ok` (a 2xx), the HTTP status if any, an error text for people,
    how long it took, a Retry-After in seconds if the receiver sent one with 429/503, and `gone`
    (410: the receiver wants no more)."""

    ok: bool
    status: int | None
    error: str | None
    duration_ms: int
    retry_after: int | None = None

    @property
    def gone(self) -> bool:
        return self.status == 410


# --- secrets and signatures --------------------------------------------------------------------
def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret)


def signature(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one `v1,<base64 HMAC-SHA256>` per secret, space separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode("ascii")
                    for s in secrets)


def body_for(event: dict[str, Any], now: dt.datetime) -> bytes:
    """The request body: the event's type, the send time and the event as the API renders it."""
    stamp = now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps({"type": event["type"], "timestamp": stamp, "data": event},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def headers_for(secrets: Iterable[str], msg_id: str, now: dt.datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for body, signed with every live secret."""
    timestamp = int(now.timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secrets, msg_id, timestamp, body),
            "content-type": "application/json", "user-agent": USER_AGENT}


# --- the retry schedule ------------------------------------------------------------------------
def next_attempt(backoff: str, retries: int, attempt: int, now: dt.datetime,
                 retry_after: int | None = None) -> dt.datetime | None:
    """When to try again after failed attempt number `attempt` (1 = the first), or None when the
    alert's `retries` are used up (the delivery is exhausted). A Retry-After wins over the schedule."""
    if attempt > retries:
        return None
    if retry_after is not None:
        return now + dt.timedelta(seconds=min(max(retry_after, 0), MAX_RETRY_AFTER))
    if backoff == "immediate":
        return now
    if backoff == "fixed":
        return now + dt.timedelta(seconds=FIXED_INTERVAL)
    return now + dt.timedelta(seconds=EXPONENTIAL[min(attempt, len(EXPONENTIAL)) - 1])


def parse_retry_after(value: str | None, now: dt.datetime) -> int | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, int() refuses it
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0, int((when - now).total_seconds()))


# --- dialling ----------------------------------------------------------------------------------
def permitted(settings: Settings, ip: str) -> bool:
    """May a webhook go to ip? Public and not the appliance's own, unless webhook_allow_private."""
    if settings.webhook_allow_private:
        return True
    return is_public(ip) and str(ipaddress.ip_address(ip.split("%", 1)[0])) not in own_addresses(settings)


def resolve_target(settings: Settings, resolver: Resolver, url: str) -> tuple[httpx.URL, str]:
    """The parsed URL and the one address to connect to, after checking every address the host
    has now; raises TargetRefused (with a reason for the delivery log) otherwise."""
    import httpx
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise TargetRefused(f"not a usable URL ({exc})") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise TargetRefused("the target must be an http(s) URL with a host")
    if parsed.scheme == "http" and not settings.webhook_allow_private:
        raise TargetRefused("the target must be https://")
    addresses = _addresses(resolver, parsed.host)
    if not addresses:
        raise TargetRefused(f"{parsed.host} has no address")
    refused = [ip for ip in addresses if not permitted(settings, ip)]
    if refused:
        raise TargetRefused(f"{parsed.host} resolves to a non-public address ({refused[0]})")
    return parsed, addresses[0]


def _addresses(resolver: Resolver, host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        answer = resolver.query(host, rdtype)
        if answer.outcome is Outcome.ANSWER:
            found.extend(answer.records)
        elif answer.outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
            raise TargetRefused(f"DNS for {host} failed ({answer.outcome.value})")
    return found


def send(settings: Settings, resolver: Resolver, url: str, headers: dict[str, str], body: bytes,
         now: dt.datetime, clients: Clients | None = None) -> Result:
    """POST body to url once (resolved and checked now, no redirects, webhook_timeout seconds in
    all), on a kept-alive connection of `clients` if given; never raises for what the network or
    the receiver does."""
    import httpx
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)
    try:
        parsed, ip = resolve_target(settings, resolver, url)
    except TargetRefused as exc:
        return Result(False, None, f"refused: {exc}", took())
    host = parsed.host
    dial = parsed.copy_with(host=ip)  # the checked address; the name goes in Host and SNI
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    try:
        if clients is not None:
            response = _post(clients.get(settings, parsed.scheme, host, ip, parsed.port), dial,
                             {**headers, "host": host_header}, body, host, settings.webhook_timeout)
        else:
            with _new_client(settings, None) as client:
                response = _post(client, dial, {**headers, "host": host_header}, body, host, settings.webhook_timeout)
    except httpx.TimeoutException:
        return Result(False, None, f"no answer within {settings.webhook_timeout:g} s", took())
    except httpx.HTTPError as exc:
        return Result(False, None, f"connection failed: {type(exc).__name__}: {str(exc)[:200]}", took())
    status = response.status_code
    if 200 <= status < 300:
        return Result(True, status, None, took())
    retry_after = parse_retry_after(response.headers.get("retry-after"), now) if status in (429, 503) else None
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Result(False, status, error, took(), retry_after)


class Clients:
    """Keep-alive HTTP clients, one per (scheme, host name, checked address, port), reused across
    attempts (the delivery engine holds one set and closes it when it stops).

    Every attempt still resolves and checks the name first (resolve_target) and then takes the
    client of the address it got, so a connection is only ever reused for the same name to the
    same checked address: a name that now resolves elsewhere gets another client, and a TLS
    connection never carries a second name under the first one's certificate."""

    MAX = 256  # targets kept open at once; past it the least recently used is dropped
    KEEPALIVE_EXPIRY = 30.0  # seconds an idle connection stays open

    def __init__(self) -> None:
        self._clients: OrderedDict[tuple, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, settings: Settings, scheme: str, host: str, ip: str, port: int | None) -> httpx.Client:
        """The client for one host name at one checked address (made on first use)."""
        key = (scheme, host, ip, port, str(settings.tls_ca_file or ""), settings.webhook_timeout)
        with self._lock:
            client = self._clients.pop(key, None) or _new_client(settings, self.KEEPALIVE_EXPIRY)
            self._clients[key] = client
            while len(self._clients) > self.MAX:
                # Dropped, not closed: a send may be using it; its sockets close when it is collected.
                self._clients.popitem(last=False)
            return client

    def close(self) -> None:
        """Close every kept connection."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()


def _new_client(settings: Settings, keepalive: float | None) -> httpx.Client:
    import httpx
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.webhook_concurrency if keepalive
                          else 0, keepalive_expiry=keepalive)
    return httpx.Client(timeout=httpx.Timeout(settings.webhook_timeout), follow_redirects=False, trust_env=False,
                        verify=_tls(settings), limits=limits)


_contexts: dict[str | None, ssl.SSLContext] = {}
_context_lock = threading.Lock()


def _tls(settings: Settings) -> ssl.SSLContext:
    """One verifying TLS context for every send (making one costs milliseconds): the system's CAs,
    or the operator's tls_ca_file bundle (the appliance's outbound trust, as for MTA-STS)."""
    cafile = str(settings.tls_ca_file) if settings.tls_ca_file else None
    with _context_lock:
        if cafile not in _contexts:
            _contexts[cafile] = ssl.create_default_context(cafile=cafile)
        return _contexts[cafile]


def _post(client: httpx.Client, url: httpx.URL, headers: dict[str, str], body: bytes, host: str,
          total: float) -> httpx.Response:
    """The POST, reading at most 64 KiB of the answer, all within `total` seconds."""
    import httpx
    deadline = time.monotonic() + total
    request = client.build_request("POST", url, headers=headers, content=body,
                                   extensions={"sni_hostname": host})
    response = client.send(request, stream=True)
    try:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > 65536 or time.monotonic() > deadline:
                break
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer took too long")
    finally:
        response.close()
    return response
