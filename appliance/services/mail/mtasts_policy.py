"""MTA-STS on the sending side (RFC 8461): the policy a recipient domain publishes, discovered,
fetched, cached in the store and handed to appliance.delivery, which applies it.

(appliance/services/domains/mtasts.py is the other side: the policy the appliance serves for its own
domains.)

Discovery (RFC 8461 3 and 5.1): the `_mta-sts.<domain>` TXT record (`v=STSv1; id=...`) says a
policy exists and names its version; the policy itself comes from
`https://mta-sts.<domain>/.well-known/mta-sts.txt`, over HTTPS with a certificate valid for that
name (system CAs, or settings.tls_ca_file), no redirects, at most 64 KiB, within
settings.mta_sts_timeout. The cached copy is used until its max_age passes or the TXT id changes;
when a refetch fails, an unexpired cached policy stays in force; with no usable policy at all the
domain is treated as having none (opportunistic TLS), as the RFC says.

What a policy means for delivery: `enforce` (only MX hosts matching its `mx` patterns, STARTTLS
with a certificate valid for the MX host name, never clear text: defer instead), `testing`
(deliver as usual, report what enforce would have refused), `none` (ignore).
"""
from __future__ import annotations

import datetime as dt
import http.client
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.addresses import permitted
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Outcome, Resolver
from appliance.models import MtaStsPolicy

log = logging.getLogger("gentbox.mtasts")

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: senders may refuse larger policies
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: one year
MODES = ("enforce", "testing", "none")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


@dataclass(frozen=True)
class Policy:
    """One domain's policy as fetched (immutable: safe to share across delivery threads)."""

    domain: str
    id: str
    mode: str  # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int
    fetched_at: dt.datetime

    def allows(self, host: str) -> bool:
        """Whether an MX host name matches one of the policy's mx patterns (RFC 8461 4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.fetched_at + dt.timedelta(seconds=self.max_age)


class PolicyUnavailable(Exception):
    """The policy could not be fetched or parsed (the reason is the message)."""


def mx_matches(pattern: str, host: str) -> bool:
    """`mx.example.com` matches only itself; `*.example.com` matches one more label on the left
    (`a.example.com`, not `example.com` nor `a.b.example.com`). Case and a final dot are ignored."""
    pattern, host = pattern.strip().lower().rstrip("."), host.strip().lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


# --- parsing ----------------------------------------------------------------------------------
def parse_txt(records: tuple[str, ...]) -> str | None:
    """The id of the one `v=STSv1` TXT record, or None (none, several, or malformed: no policy)."""
    found = [r for r in records if re.match(r"v=STSv1\s*(;|$)", r)]
    if len(found) != 1:
        return None
    fields = dict(part.strip().split("=", 1) for part in found[0].split(";") if "=" in part)
    policy_id = fields.get("id", "").strip()
    return policy_id if _ID.fullmatch(policy_id) else None


def parse_policy(domain: str, policy_id: str, text: str, now: dt.datetime) -> Policy:
    """The policy file (RFC 8461 3.2: `key: value` lines, CRLF or LF); PolicyUnavailable if invalid."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            mx.append(value.lower())
        else:
            fields.setdefault(key, value)
    mode = fields.get("mode", "").lower()
    if fields.get("version") != "STSv1":
        raise PolicyUnavailable("the policy has no `version: STSv1` line")
    if mode not in MODES:
        raise PolicyUnavailable(f"the policy's mode is not enforce, testing or none: {mode[:20]!r}")
    if not (fields.get("max_age", "").isascii() and fields.get("max_age", "").isdigit()) or len(fields["max_age"]) > 10:
        raise PolicyUnavailable("the policy's max_age is not a number of seconds")
    if mode != "none" and (not mx or not all(_valid_pattern(p) for p in mx)):
        raise PolicyUnavailable("the policy lists no valid mx patterns")
    max_age = min(int(fields["max_age"]), MAX_AGE_LIMIT)
    return Policy(domain, policy_id, mode, tuple(mx), max_age, now)


def _valid_pattern(pattern: str) -> bool:
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.rstrip(".").split(".")
    return len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels)


# --- fetching ---------------------------------------------------------------------------------
def https_context(settings: Settings) -> ssl.SSLContext:
    """A client context that verifies certificates: the system CAs, or settings.tls_ca_file."""
    return ssl.create_default_context(cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)


def fetch_policy(settings: Settings, resolver: Resolver, domain: str) -> str:
    """The policy file's text from https://mta-sts.<domain>/.well-known/mta-sts.txt, or
    PolicyUnavailable: any status but 200 (redirects included), not text/plain, too big, too slow,
    or a certificate not valid for mta-sts.<domain>."""
    host = f"mta-sts.{domain}"
    deadline = time.monotonic() + settings.mta_sts_timeout
    addresses = _addresses(settings, resolver, host)
    last = "no public address"
    for ip in addresses:
        try:
            return _get(settings, host, ip, deadline)
        except (OSError, http.client.HTTPException) as exc:
            last = f"{ip}: {exc}"[:300]
        if time.monotonic() >= deadline:
            break
    raise PolicyUnavailable(f"could not fetch https://{host}/.well-known/mta-sts.txt ({last})")


def _addresses(settings: Settings, resolver: Resolver, host: str) -> list[str]:
    # The appliance's resolver, like MX lookups (not the system's, which may differ); only the
    # addresses the worker may dial (a policy host is named by the recipient domain: no SSRF).
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        answer = resolver.query(host, rdtype)
        if answer.outcome == Outcome.ANSWER:
            found += [ip for ip in answer.records if permitted(settings, ip)]
    return found


def _get(settings: Settings, host: str, ip: str, deadline: float) -> str:
    remaining = max(deadline - time.monotonic(), 0.1)
    sock = socket.create_connection((ip, settings.mta_sts_https_port), timeout=remaining)
    try:
        tls = https_context(settings).wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    connection = http.client.HTTPSConnection(host, settings.mta_sts_https_port, timeout=remaining)
    connection.sock = tls  # already connected and verified against host; http.client never redirects
    try:
        connection.request("GET", "/.well-known/mta-sts.txt", headers={"Accept": "text/plain"})
        response = connection.getresponse()
        if response.status != 200:
            raise PolicyUnavailable(f"https://{host}/.well-known/mta-sts.txt answered {response.status}")
        if (response.getheader("Content-Type") or "").split(";")[0].strip().lower() != "text/plain":
            raise PolicyUnavailable(f"https://{host}/.well-known/mta-sts.txt is not text/plain")
        body = _read_limited(response, deadline)
    finally:
        connection.close()
    return body.decode("utf-8", "replace")


def _read_limited(response: http.client.HTTPResponse, deadline: float) -> bytes:
    body = b""
    while chunk := response.read(8192):
        body += chunk
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyUnavailable(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
        if time.monotonic() > deadline:
            raise PolicyUnavailable("the policy took too long to arrive")
    return body


# --- the cache --------------------------------------------------------------------------------
def cached_policy(db: Session, domain: str) -> Policy | None:
    """The stored policy of domain, expired or not."""
    row = db.get(MtaStsPolicy, domain)
    if row is None:
        return None
    return Policy(row.domain, row.policy_id, row.mode, tuple(row.mx or ()), row.max_age, row.fetched_at)


def save_policy(db: Session, policy: Policy) -> None:
    """Store (or replace) domain's policy."""
    row = db.get(MtaStsPolicy, policy.domain)
    if row is None:
        row = MtaStsPolicy(domain=policy.domain)
        db.add(row)
    row.policy_id, row.mode, row.mx = policy.id, policy.mode, list(policy.mx)
    row.max_age, row.fetched_at = policy.max_age, policy.fetched_at


def refresh(settings: Settings, resolver: Resolver, domain: str, cached: Policy | None,
            now: dt.datetime) -> Policy | None:
    """The policy in force for domain: the cached one while its TXT id is unchanged and max_age
    has not passed, else a newly fetched one; a failed fetch keeps an unexpired cached policy."""
    usable = cached if cached is not None and not cached.expired(now) else None
    answer = resolver.query(f"_mta-sts.{domain}", "TXT")
    policy_id = parse_txt(answer.records) if answer.outcome == Outcome.ANSWER else None
    if policy_id is None or (usable is not None and usable.id == policy_id):
        return usable  # no (valid) record: a cached policy stays in force until it expires (5.1)
    try:
        return parse_policy(domain, policy_id, fetch_policy(settings, resolver, domain), now)
    except PolicyUnavailable as failure:
        log.warning("mta-sts: policy of %s (id %s) unavailable: %s", domain, policy_id, failure)
        return usable


def policy_for(store: Store, settings: Settings, resolver: Resolver, domain: str) -> Policy | None:
    """The MTA-STS policy the worker applies to domain now (None: opportunistic TLS). Reads and
    writes the cache in short transactions of their own: no transaction stays open across the
    DNS lookup and HTTPS fetch."""
    domain = domain.lower().rstrip(".")
    with store.read_sessions() as db:
        cached = cached_policy(db, domain)
    now = utcnow()
    policy = refresh(settings, resolver, domain, cached, now)
    if policy is not None and policy != cached:
        try:
            with store.session() as db:
                save_policy(db, policy)
        except IntegrityError:
            pass  # another worker stored the same domain's policy at the same moment: theirs is as good
    return policy if policy is not None and policy.mode != "none" else None
