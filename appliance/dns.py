"""All DNS goes through here: one dnspython resolver, configured from the settings.

Outcomes are distinct values (answer, NXDOMAIN, no data, SERVFAIL, timeout), never sentinel
strings and never exceptions that reach a user. Tests and air-gapped installs point
GENTBOX_DNS_SERVERS at their own server (`host` or `host:port`, comma-separated).
"""
from __future__ import annotations

import collections
import enum
import functools
import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from appliance.config import Settings


@functools.cache
def public_suffixes():  # noqa: ANN201 (publicsuffixlist.PublicSuffixList, imported here only)
    """The one Public Suffix List of the process (built on first use: ~3 MB, shared by every caller)."""
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList()


class Outcome(enum.Enum):
    ANSWER = "answer"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, but has no record of this type
    SERVFAIL = "servfail"  # every server failed or refused
    TIMEOUT = "timeout"  # no answer within the lifetime


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    records: tuple[str, ...] = ()  # TXT strings joined; MX as "pref host"; A/AAAA as addresses

    @property
    def definite(self) -> bool:
        """True when DNS told us something (records, or that there are none)."""
        return self.outcome in (Outcome.ANSWER, Outcome.NXDOMAIN, Outcome.NODATA)


def _parse_server(entry: str) -> dns.nameserver.Do53Nameserver:
    host, port = entry, 53
    if entry.startswith("["):  # [::1]:5353
        host, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
        port = int(port_text)
    return dns.nameserver.Do53Nameserver(host, port)


class Resolver:
    """A resolver with an explicit per-query lifetime: a slow server costs at most that long."""

    def __init__(self, settings: Settings) -> None:
        servers = settings.dns_servers
        self._resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = [_parse_server(s) for s in servers]
        self.lifetime = settings.dns_lifetime or settings.dns_timeout
        # Retry within the lifetime: a lost UDP packet should not turn into "unknown".
        self._resolver.timeout = min(2.0, settings.dns_timeout, self.lifetime)
        self._resolver.lifetime = self.lifetime
        self._resolver.cache = None  # checks must see what DNS says now

    def query(self, name: str, rdtype: str, lifetime: float | None = None) -> Answer:
        """Ask for name's records of rdtype (TXT, MX, A, AAAA, CNAME, PTR), within lifetime seconds
        (default: the configured lifetime)."""
        return self.lookup(name, rdtype, lifetime)[0]

    def lookup(self, name: str, rdtype: str, lifetime: float | None = None) -> tuple[Answer, int]:
        """query(), and for how many seconds DNS lets the answer be kept: the smallest TTL on the
        way to the records; for NXDOMAIN or no data, the SOA's negative TTL (RFC 2308), or 0 when
        the reply carries no SOA; 0 for a failure."""
        try:
            answer = self._resolver.resolve(name, rdtype, raise_on_no_answer=True, search=False,
                                            lifetime=lifetime)
        except dns.resolver.NXDOMAIN as exc:
            return Answer(Outcome.NXDOMAIN), min((_negative_ttl(r) for r in exc.responses().values()), default=0)
        except dns.resolver.NoAnswer as exc:
            return Answer(Outcome.NODATA), _negative_ttl(exc.response())
        except (dns.resolver.LifetimeTimeout, dns.exception.Timeout):
            return Answer(Outcome.TIMEOUT), 0
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN, dns.exception.DNSException, OSError):
            return Answer(Outcome.SERVFAIL), 0
        ttls = [rrset.ttl for rrset in answer.response.answer]  # the records and any CNAMEs to them
        return Answer(Outcome.ANSWER, tuple(_text(rdata) for rdata in answer)), min(ttls, default=0)


class CachingResolver(Resolver):
    """A Resolver that keeps definite answers (records, NXDOMAIN, no data) for as long as their
    TTL allows, but never longer than max_ttl (max_negative_ttl for negative answers); server
    failures are never kept, nor negative answers without an SOA. At most max_entries answers,
    the least recently used dropped first. Thread-safe.

    A name whose query timed out (given the full lifetime) is not asked again for
    settings.dns_timeout_memory seconds: its queries answer TIMEOUT at once, so a sender whose
    DNS never answers costs one lifetime per name, not one per message (at most max_timeouts
    names are remembered, the oldest forgotten first).

    For the mail-authentication checks of the SMTP listener only (the same sender domains' SPF and
    DMARC records, asked for every message): the shared Resolver keeps nothing on purpose, since
    the domain checks must see what the owner has just published."""

    def __init__(self, settings: Settings, *, max_entries: int = 10_000, max_ttl: float = 300.0,
                 max_negative_ttl: float = 60.0, max_timeouts: int = 10_000) -> None:
        super().__init__(settings)
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, Answer]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._timeouts = TimeoutMemory(settings.dns_timeout_memory, max_timeouts)

    def __len__(self) -> int:
        return len(self._entries)

    def query(self, name: str, rdtype: str, lifetime: float | None = None) -> Answer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry[0] > time.monotonic():
                    self._entries.move_to_end(key)
                    return entry[1]
                del self._entries[key]
        if self._timeouts.recent(key[0]):
            return Answer(Outcome.TIMEOUT)
        answer, ttl = self.lookup(name, rdtype, lifetime)
        if answer.outcome is Outcome.TIMEOUT and (lifetime is None or lifetime >= self.lifetime):
            self._timeouts.add(key[0])  # not when a deadline cut the wait short: the name may be fine
        keep = min(ttl, self.max_ttl if answer.outcome is Outcome.ANSWER else self.max_negative_ttl)
        if answer.definite and keep > 0:
            with self._lock:
                self._entries[key] = (time.monotonic() + keep, answer)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return answer


class TimeoutMemory:
    """Names whose DNS query timed out in the last `seconds`, at most max_names of them (the
    oldest forgotten first). Thread-safe."""

    def __init__(self, seconds: float, max_names: int) -> None:
        self.seconds = seconds
        self.max_names = max_names
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def add(self, name: str) -> None:
        """Remember that name's query timed out just now."""
        if self.seconds <= 0:
            return
        with self._lock:
            self._until.pop(name, None)
            self._until[name] = time.monotonic() + self.seconds
            while len(self._until) > self.max_names:
                self._until.popitem(last=False)

    def recent(self, name: str) -> bool:
        """True while name's last timeout is remembered."""
        with self._lock:
            until = self._until.get(name)
            if until is None:
                return False
            if until > time.monotonic():
                return True
            del self._until[name]
            return False


class DeadlineResolver:
    """A resolver's query() with one deadline (time.monotonic()) for all of them: each query waits
    at most until then, and after it every query answers TIMEOUT at once. For one message's
    authentication step, so SPF, DKIM and DMARC together cost at most one deadline."""

    def __init__(self, resolver: Resolver, deadline: float) -> None:
        self.resolver = resolver
        self.deadline = deadline
        self.lifetime = resolver.lifetime

    def query(self, name: str, rdtype: str) -> Answer:
        """The resolver's answer, or TIMEOUT once the deadline is near or past."""
        left = self.deadline - time.monotonic()
        if left <= 0.001:
            return Answer(Outcome.TIMEOUT)
        return self.resolver.query(name, rdtype, lifetime=left if left < self.lifetime else None)


def _negative_ttl(response: dns.message.Message) -> int:
    """RFC 2308 section 5: the SOA record's TTL or its MINIMUM field, whichever is less (and no
    more than a CNAME on the way); 0 when there is no SOA: such an answer must not be kept."""
    soa = [rrset for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA]
    if not soa:
        return 0
    return min([soa[0].ttl, soa[0][0].minimum, *(rrset.ttl for rrset in response.answer)])


def _text(rdata) -> str:  # noqa: ANN001
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdata.rdtype == dns.rdatatype.MX:
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if rdata.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.NS):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()
