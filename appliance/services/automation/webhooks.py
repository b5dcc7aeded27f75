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
POST cost the sending threads more than half their time. The POST is http.client's (httpx
parses and checks the URL): httpx's per-request work was 3/4 of the sending threads' CPU.

The retry schedule and what an outcome means for a delivery and its alert are decided here too
(`next_attempt`, `Result`), so the dispatcher only records them.
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import select
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from appliance.addresses import is_public, own_addresses
from appliance.config import Settings
from appliance.dns import Outcome, Resolver

if TYPE_CHECKING:  # httpx is imported where a URL is parsed: the web process seldom needs it
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


@functools.lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with the secret, built once per secret; each signature signs a copy."""
    return hmac.new(_key(secret), digestmod=hashlib.sha256)


def signature(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one `v1,<base64 HMAC-SHA256>` per secret, space separated."""
    head, macs = f"{msg_id}.{timestamp}.".encode(), []
    for secret in secrets:
        mac = _keyed(secret).copy()
        mac.update(head)  # the signed content is "{id}.{timestamp}.{body}"
        mac.update(body)
        macs.append("v1," + base64.b64encode(mac.digest()).decode("ascii"))
    return " ".join(macs)


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
        parsed = _parse(url)
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


@functools.lru_cache(maxsize=1024)
def _parse(url: str) -> httpx.URL:
    """The URL parsed (an immutable value), once per target: parsing was a third of a send's work."""
    import httpx
    return httpx.URL(url)


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
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)
    try:
        parsed, ip = resolve_target(settings, resolver, url)
    except TargetRefused as exc:
        return Result(False, None, f"refused: {exc}", took())
    pool = clients if clients is not None else Clients()
    try:
        status, retry_after = pool.post(settings, parsed, ip, headers, body, started + settings.webhook_timeout)
    except TimeoutError:
        return Result(False, None, f"no answer within {settings.webhook_timeout:g} s", took())
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, TLS (ssl.SSLError), bad answer
        return Result(False, None, f"connection failed: {type(exc).__name__}: {str(exc)[:200]}", took())
    finally:
        if clients is None:
            pool.close()
    if 200 <= status < 300:
        return Result(True, status, None, took())
    retry_after_s = parse_retry_after(retry_after, now) if status in (429, 503) else None
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Result(False, status, error, took(), retry_after_s)


class _Connection(http.client.HTTPConnection):
    """HTTP/1.1 to one checked address (never a second resolution of the name), speaking TLS to
    the target's name when `context` is given: SNI, and the certificate verified against the name."""

    def __init__(self, ip: str, port: int, name: str, context: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__(ip, port, timeout=timeout)
        self.name, self.context, self.idle_since = name, context, 0.0
        self.head: bytes | None = None  # see send

    def send(self, data: Any) -> None:
        """A request's head (its first write) is held back and written with its body: one write
        and one TCP segment instead of two (http.client writes them apart; the second write cost
        a loopback round of the kernel's work and a wakeup of the receiver)."""
        if self.head is None:
            self.head = data
            return
        data, self.head = self.head + data, b""
        super().send(data)

    def connect(self) -> None:
        super().connect()  # TCP to (ip, port), TCP_NODELAY
        if self.context is not None:
            self.sock = self.context.wrap_socket(self.sock, server_hostname=self.name)

    def stale(self) -> bool:
        """Closed by the peer (or sent something unasked) while idle, or idle too long: not reusable."""
        if self.sock is None or time.monotonic() - self.idle_since > Clients.KEEPALIVE_EXPIRY:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


class Clients:
    """Kept-alive connections, pooled per (scheme, host name, checked address, port, CA bundle),
    reused across attempts (the delivery engine holds one set and closes it when it stops).

    Every attempt still resolves and checks the name first (resolve_target) and then takes a
    connection of the address it got, so a connection is only ever reused for the same name to
    the same checked address: a name that now resolves elsewhere gets another connection, and a
    TLS connection never carries a second name under the first one's certificate.

    The POST is the standard library's http.client (headers and body leave in one write): httpx
    cost the sending threads about 4 times the CPU per request (docs/benchmarks.md)."""

    MAX = 256  # targets with idle connections kept at once; past it the least recently used are closed
    KEEPALIVE_EXPIRY = 30.0  # seconds an idle connection stays open
    MAX_ANSWER = 65536  # bytes of an answer read; past it the connection is closed, not reused

    def __init__(self) -> None:
        self._idle: OrderedDict[tuple, list[_Connection]] = OrderedDict()
        self._lock = threading.Lock()

    def post(self, settings: Settings, parsed: httpx.URL, ip: str, headers: dict[str, str], body: bytes,
             deadline: float) -> tuple[int, str | None]:
        """POST to parsed's path at ip, by deadline (monotonic); returns the status and the
        Retry-After header. Raises TimeoutError, OSError or http.client.HTTPException."""
        key, target = _target(parsed, ip, settings)
        kept = self._take(key)
        if kept is not None:
            try:
                return self._post(settings, key, target, kept, headers, body, deadline)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The receiver closed the kept connection as it was reused (no answer came): once
                # more on a new one. At least once allows it, and the receiver dedups by webhook-id.
                pass
        fresh = _Connection(ip, target.port, target.name, _tls(settings) if target.tls else None, _left(deadline))
        return self._post(settings, key, target, fresh, headers, body, deadline)

    def _post(self, settings: Settings, key: tuple, target: _Target, conn: _Connection, headers: dict[str, str],
              body: bytes, deadline: float) -> tuple[int, str | None]:
        reusable, response = False, None
        try:
            conn.timeout = _left(deadline)
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            conn.head = None if body else b""  # hold the head for the body (an empty body writes none)
            conn.request("POST", target.path, body=body, headers={**headers, "host": target.host_header})
            response = conn.getresponse()  # its status line and headers
            status, retry_after = response.status, response.getheader("retry-after")
            reusable = _drain(conn, response, deadline, self.MAX_ANSWER)
            return status, retry_after
        finally:
            if reusable:
                self._give(key, conn, settings.webhook_concurrency)
            else:
                conn.close()
                if response is not None:
                    response.close()  # it holds the socket when the server said it closes

    def _take(self, key: tuple) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()  # the most recently used: the likeliest still open
                if not conn.stale():
                    return conn
                conn.close()
        return None

    def _give(self, key: tuple, conn: _Connection, most: int) -> None:
        conn.idle_since, dropped = time.monotonic(), []
        with self._lock:
            idle = self._idle.pop(key, [])
            self._idle[key] = idle
            if len(idle) < most:
                idle.append(conn)
            else:
                dropped.append(conn)
            while len(self._idle) > self.MAX:
                dropped.extend(self._idle.popitem(last=False)[1])  # idle: nobody is using them
        for extra in dropped:
            extra.close()

    def close(self) -> None:
        """Close every kept connection."""
        with self._lock:
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for conns in idle:
            for conn in conns:
                conn.close()


@dataclass(frozen=True)
class _Target:
    tls: bool
    name: str  # the host name (IDNA, ASCII) for SNI and the certificate
    port: int
    host_header: str
    path: str


def _target(parsed: httpx.URL, ip: str, settings: Settings) -> tuple[tuple, _Target]:
    """The pool key and what the request needs of the URL."""
    tls = parsed.scheme == "https"
    name = parsed.raw_host.decode("ascii")
    shown = f"[{name}]" if ":" in name else name
    target = _Target(tls, name, parsed.port or (443 if tls else 80),
                     shown if parsed.port is None else f"{shown}:{parsed.port}", parsed.raw_path.decode("ascii"))
    return (parsed.scheme, name, ip, target.port, str(settings.tls_ca_file or "")), target


def _left(deadline: float) -> float:
    """Seconds left before deadline (TimeoutError when none)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the answer took too long")
    return left


def _drain(conn: _Connection, response: http.client.HTTPResponse, deadline: float, most: int) -> bool:
    """Read (and drop) the answer's body, at most `most` bytes, by deadline; True when the
    connection can carry another request (the body was read to its end, and it stays open)."""
    read = 0
    while not response.isclosed() and read <= most:
        left = _left(deadline)
        if conn.sock is not None:  # None: the server closes after this answer (the response holds the socket)
            conn.sock.settimeout(left)
        chunk = response.read1(16384)  # one read of the socket at most: the deadline is checked between
        if not chunk:
            if response.length == 0:
                response.read()  # the end of a sized body: marks the response done
            break
        read += len(chunk)
    _left(deadline)
    return response.isclosed() and not response.will_close and conn.sock is not None


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
