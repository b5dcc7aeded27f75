"""Inbound resource limits (issue 14, point 8), below the listener: what a client's connections
count against (an IPv6 /64), DNS timeouts remembered for a short while, and the deadline of one
message's DNS questions. A UDP socket that never answers stands in for a DNS server that times out."""
from __future__ import annotations

import socket
import time

import pytest

from appliance.config import Settings
from appliance.dns import CachingResolver, DeadlineResolver, Outcome, TimeoutMemory
from smtp.server import TOO_MANY_CONNECTIONS, TOO_MANY_FROM_YOU, ConnectionLimits, client_key

LIFETIME = 0.5  # seconds a query to the silent server waits


@pytest.fixture
def silent_dns():
    """host:port of a DNS server that takes every query and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{silent.getsockname()[1]}"


def timed(resolver, name: str) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = resolver.query(name, "TXT").outcome
    return outcome, time.monotonic() - started


def test_ipv4_counts_by_address_and_ipv6_by_its_64():
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"  # a dual-stack socket's IPv4 peer
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("") == ""  # not an IP peer: a group of its own


def test_connection_limits_count_an_ipv6_64_as_one_client_and_cap_the_total():
    limits = ConnectionLimits(None, Settings(smtp_max_connections_per_ip=2, smtp_max_connections=4))
    assert limits.enter("2001:db8::1") == limits.enter("2001:db8::2") == ""
    assert limits.enter("2001:db8::ffff") == TOO_MANY_FROM_YOU  # the same /64
    assert limits.enter("2001:db8:0:1::1") == ""  # the next /64
    assert limits.enter("192.0.2.1") == ""
    assert limits.enter("192.0.2.2") == TOO_MANY_CONNECTIONS  # four open in all
    limits.leave("2001:db8::2")
    assert limits.enter("2001:db8::3") == ""  # a slot of its /64 freed, and one of the total
    for ip in ("2001:db8::1", "2001:db8::3", "2001:db8:0:1::1", "192.0.2.1"):
        limits.leave(ip)
    assert (limits.total, dict(limits.open)) == (0, {})


def test_a_timed_out_name_answers_timeout_at_once_for_a_while(silent_dns):
    resolver = CachingResolver(Settings(dns_servers=silent_dns, dns_timeout=LIFETIME))
    outcome, waited = timed(resolver, "slow.test")
    assert outcome is Outcome.TIMEOUT and waited >= LIFETIME * 0.9
    outcome, waited = timed(resolver, "SLOW.test.")  # the same name: not asked again
    assert outcome is Outcome.TIMEOUT and waited < 0.05
    assert timed(resolver, "_dmarc.slow.test")[1] >= LIFETIME * 0.9  # another name is asked
    assert len(resolver) == 0  # no answer was kept: only the timeouts are remembered


def test_only_timeouts_of_a_full_lifetime_are_remembered_and_at_most_max_timeouts(silent_dns):
    resolver = CachingResolver(Settings(dns_servers=silent_dns, dns_timeout=LIFETIME), max_timeouts=2)
    # Cut short by a deadline: the name may be fine, so it is asked again next time.
    assert DeadlineResolver(resolver, time.monotonic() + 0.1).query("cut.test", "TXT").outcome is Outcome.TIMEOUT
    assert timed(resolver, "cut.test")[1] >= LIFETIME * 0.9
    timed(resolver, "other.test")  # remembered: cut.test, other.test
    timed(resolver, "third.test")  # cut.test is forgotten
    assert timed(resolver, "third.test")[1] < 0.05
    assert timed(resolver, "cut.test")[1] >= LIFETIME * 0.9


def test_a_remembered_timeout_is_forgotten_after_its_time():
    memory = TimeoutMemory(0.2, 10)
    memory.add("slow.test")
    assert memory.recent("slow.test") and not memory.recent("other.test")
    deadline = time.monotonic() + 5
    while memory.recent("slow.test"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(memory) == 0
    off = TimeoutMemory(0, 10)  # dns_timeout_memory = 0: nothing remembered
    off.add("slow.test")
    assert not off.recent("slow.test")


def test_past_its_deadline_a_query_answers_timeout_without_asking(silent_dns):
    resolver = CachingResolver(Settings(dns_servers=silent_dns, dns_timeout=5.0))
    started = time.monotonic()
    bounded = DeadlineResolver(resolver, started + 0.3)
    assert bounded.query("first.test", "TXT").outcome is Outcome.TIMEOUT  # waits until the deadline only
    assert bounded.query("second.test", "TXT").outcome is Outcome.TIMEOUT  # after it: at once
    assert 0.25 < time.monotonic() - started < 1.0
