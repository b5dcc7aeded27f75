"""The mail-authentication DNS cache (appliance.dns.CachingResolver) against a real dnsmasq that
answers as the zone's authoritative server: records with a TTL, negative answers with an SOA."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.dns import CachingResolver, Outcome, Resolver
from tests.dnsserver import DnsServer


class AuthoritativeDnsServer(DnsServer):
    """dnsmasq authoritative for its zones: every answer carries TTL `ttl`, and NXDOMAIN and
    no-data answers the zone's SOA (whose MINIMUM is the same `ttl`)."""

    def __init__(self, workdir: Path, ttl: int) -> None:
        super().__init__(workdir, zones=("test",))
        self.ttl = ttl

    def _config(self) -> str:
        lines = [line for line in super()._config().splitlines() if not line.startswith("local=")]
        lines += ["auth-server=ns.test,lo", f"auth-ttl={self.ttl}", *(f"auth-zone={z}" for z in sorted(self.zones))]
        return "\n".join(lines) + "\n"


@pytest.fixture
def authoritative(tmp_path: Path):
    servers = []

    def start(ttl: int) -> AuthoritativeDnsServer:
        servers.append(AuthoritativeDnsServer(tmp_path / f"dns{len(servers)}", ttl))
        servers[-1].workdir.mkdir()
        return servers[-1].start()

    yield start
    for server in servers:
        server.stop()


def caching(server: DnsServer, **limits) -> CachingResolver:
    return CachingResolver(Settings(dns_servers=server.address, dns_timeout=2.0), **limits)


def txt(resolver: Resolver, name: str) -> tuple[Outcome, tuple[str, ...]]:
    answer = resolver.query(name, "TXT")
    return answer.outcome, answer.records


def change(server: DnsServer, name: str, value: str) -> None:
    server.remove(name, "TXT", restart=False)
    server.publish(name, "TXT", value)


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_an_answer_is_kept_for_its_ttl_then_asked_again(authoritative):
    server = authoritative(4)
    server.publish("spf.test", "TXT", "v=spf1 -all")
    resolver, live = caching(server), Resolver(Settings(dns_servers=server.address, dns_timeout=2.0))
    start = time.monotonic()
    assert txt(resolver, "spf.test") == (Outcome.ANSWER, ("v=spf1 -all",))
    change(server, "spf.test", "v=spf1 +all")
    assert txt(live, "spf.test") == (Outcome.ANSWER, ("v=spf1 +all",))  # DNS says so now...
    assert time.monotonic() - start < 3.5, "the restart took too long for this check"
    assert txt(resolver, "SPF.test.") == (Outcome.ANSWER, ("v=spf1 -all",))  # ...the cache, until the TTL ends
    wait_until(start + 4.2)
    assert txt(resolver, "spf.test") == (Outcome.ANSWER, ("v=spf1 +all",))


def test_no_answer_is_kept_longer_than_max_ttl(authoritative):
    server = authoritative(300)
    server.publish("spf.test", "TXT", "v=spf1 -all")
    resolver = caching(server, max_ttl=1.0)
    start = time.monotonic()
    assert txt(resolver, "spf.test")[1] == ("v=spf1 -all",)
    change(server, "spf.test", "v=spf1 +all")
    if time.monotonic() - start < 0.9:
        assert txt(resolver, "spf.test")[1] == ("v=spf1 -all",)
    wait_until(start + 1.2)
    assert txt(resolver, "spf.test")[1] == ("v=spf1 +all",)


def test_nxdomain_and_no_data_are_kept_for_the_soa_negative_ttl(authoritative):
    server = authoritative(4)
    server.publish("host.test", "A", "192.0.2.1")
    resolver = caching(server)
    start = time.monotonic()
    assert txt(resolver, "_dmarc.new.test") == (Outcome.NXDOMAIN, ())
    assert txt(resolver, "host.test") == (Outcome.NODATA, ())
    server.publish("_dmarc.new.test", "TXT", "v=DMARC1; p=reject", restart=False)
    server.publish("host.test", "TXT", "v=spf1 -all")
    assert time.monotonic() - start < 3.5, "the restart took too long for this check"
    assert txt(resolver, "_dmarc.new.test") == (Outcome.NXDOMAIN, ())
    assert txt(resolver, "host.test") == (Outcome.NODATA, ())
    wait_until(start + 4.2)
    assert txt(resolver, "_dmarc.new.test") == (Outcome.ANSWER, ("v=DMARC1; p=reject",))
    assert txt(resolver, "host.test") == (Outcome.ANSWER, ("v=spf1 -all",))


def test_negative_answers_are_kept_no_longer_than_max_negative_ttl(authoritative):
    server = authoritative(300)
    resolver = caching(server, max_negative_ttl=1.0)
    start = time.monotonic()
    assert txt(resolver, "_dmarc.new.test")[0] is Outcome.NXDOMAIN
    server.publish("_dmarc.new.test", "TXT", "v=DMARC1; p=none")
    if time.monotonic() - start < 0.9:
        assert txt(resolver, "_dmarc.new.test")[0] is Outcome.NXDOMAIN
    wait_until(start + 1.2)
    assert txt(resolver, "_dmarc.new.test") == (Outcome.ANSWER, ("v=DMARC1; p=none",))


def test_answers_with_ttl_zero_and_negative_answers_without_soa_are_not_kept(dns_server):
    # The test suite's loopback server (dnsmasq, local zones): TTL 0, NXDOMAIN with no SOA.
    dns_server.publish("spf.test", "TXT", "v=spf1 -all")
    resolver = caching(dns_server)
    assert txt(resolver, "spf.test")[1] == ("v=spf1 -all",)
    assert txt(resolver, "_dmarc.spf.test")[0] is Outcome.NXDOMAIN
    assert len(resolver) == 0
    dns_server.publish("_dmarc.spf.test", "TXT", "v=DMARC1; p=none", restart=False)
    change(dns_server, "spf.test", "v=spf1 +all")
    assert txt(resolver, "spf.test")[1] == ("v=spf1 +all",)
    assert txt(resolver, "_dmarc.spf.test")[1] == ("v=DMARC1; p=none",)


def test_failures_are_never_kept():
    resolver = CachingResolver(Settings(dns_servers="127.0.0.1:9", dns_timeout=0.5))  # nothing listens
    assert txt(resolver, "spf.test")[0] in (Outcome.SERVFAIL, Outcome.TIMEOUT)
    assert len(resolver) == 0


def test_the_cache_holds_at_most_max_entries_dropping_the_least_recently_used(authoritative):
    server = authoritative(300)
    for name in ("a.test", "b.test", "c.test"):
        server.publish(name, "TXT", f"old {name}", restart=False)
    server.restart()
    resolver = caching(server, max_entries=2)
    txt(resolver, "a.test"), txt(resolver, "b.test")
    txt(resolver, "a.test")  # a is now the more recently used
    txt(resolver, "c.test")  # b goes
    assert len(resolver) == 2
    for name in ("a.test", "b.test", "c.test"):
        server.remove(name, "TXT", restart=False)
        server.publish(name, "TXT", f"new {name}", restart=False)
    server.restart()
    assert txt(resolver, "a.test")[1] == ("old a.test",)
    assert txt(resolver, "c.test")[1] == ("old c.test",)
    assert txt(resolver, "b.test")[1] == ("new b.test",)  # asked again
    assert len(resolver) == 2
