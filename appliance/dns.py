"""All DNS goes through here: one dnspython resolver, configured from the settings.

Outcomes are distinct values (answer, NXDOMAIN, no data, SERVFAIL, timeout), never sentinel
strings and never exceptions that reach a user. Tests and air-gapped installs point
GENTBOX_DNS_SERVERS at their own server (`host` or `host:port`, comma-separated).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from appliance.config import Settings


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

    def query(self, name: str, rdtype: str) -> Answer:
        """Ask for name's records of rdtype (TXT, MX, A, AAAA, CNAME, PTR)."""
        try:
            answer = self._resolver.resolve(name, rdtype, raise_on_no_answer=True, search=False)
        except dns.resolver.NXDOMAIN:
            return Answer(Outcome.NXDOMAIN)
        except dns.resolver.NoAnswer:
            return Answer(Outcome.NODATA)
        except (dns.resolver.LifetimeTimeout, dns.exception.Timeout):
            return Answer(Outcome.TIMEOUT)
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN, dns.exception.DNSException, OSError):
            return Answer(Outcome.SERVFAIL)
        return Answer(Outcome.ANSWER, tuple(_text(rdata) for rdata in answer))


def _text(rdata) -> str:  # noqa: ANN001
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdata.rdtype == dns.rdatatype.MX:
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if rdata.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.NS):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()
