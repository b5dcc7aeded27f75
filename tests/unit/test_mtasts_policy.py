"""The sending side of MTA-STS (RFC 8461): TXT record and policy parsing, MX pattern matching,
and which policy is in force as the cache ages (appliance.services.mail.mtasts_policy)."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance.services.mail.mtasts_policy import Policy, PolicyUnavailable, mx_matches, parse_policy, parse_txt

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("records, expected", [
    (("v=STSv1; id=20261206T1;",), "20261206T1"),
    (("v=STSv1;id=abc",), "abc"),
    (("v=spf1 -all", "v=STSv1; id=x1"), "x1"),
    (("v=STSv1; id=a", "v=STSv1; id=b"), None),  # two records: no policy (3.1)
    (("v=STSv1; id=not-alnum",), None),
    (("v=STSv1; id=" + "a" * 33,), None),
    (("v=STSv2; id=a",), None),
    ((), None),
])
def test_the_txt_record_names_the_policy_id(records, expected) -> None:
    assert parse_txt(records) == expected


def test_a_policy_parses_with_crlf_or_lf_and_several_mx_lines() -> None:
    text = "version: STSv1\nmode: enforce\nmx: mail.example.com\r\nmx: *.example.net\nmax_age: 604800\n"
    policy = parse_policy("example.com", "id1", text, NOW)
    assert policy == Policy("example.com", "id1", "enforce", ("mail.example.com", "*.example.net"), 604800, NOW)
    assert policy.allows("MAIL.example.com.") and policy.allows("a.example.net")
    assert not policy.allows("a.b.example.net") and not policy.allows("example.net")
    capped = parse_policy("x.test", "i", "version: STSv1\nmode: enforce\nmx: m.x.test\nmax_age: 9999999999", NOW)
    assert capped.max_age == 31_557_600  # at most a year (3.2)


@pytest.mark.parametrize("text", [
    "mode: enforce\nmx: m.example.com\nmax_age: 1",  # no version
    "version: STSv1\nmode: strict\nmx: m.example.com\nmax_age: 1",
    "version: STSv1\nmode: enforce\nmax_age: 1",  # enforce without mx
    "version: STSv1\nmode: enforce\nmx: m.example.com\nmax_age: soon",
    "version: STSv1\nmode: testing\nmx: *.*.example.com\nmax_age: 1",
    "<html>not a policy</html>",
])
def test_an_invalid_policy_is_refused(text) -> None:
    with pytest.raises(PolicyUnavailable):
        parse_policy("example.com", "i", text, NOW)


@pytest.mark.parametrize("pattern, host, expected", [
    ("mx.example.com", "mx.example.com", True), ("mx.example.com", "MX.EXAMPLE.COM.", True),
    ("mx.example.com", "mx2.example.com", False), ("*.example.com", "mx.example.com", True),
    ("*.example.com", "example.com", False), ("*.example.com", "a.mx.example.com", False),
])
def test_mx_patterns(pattern, host, expected) -> None:
    assert mx_matches(pattern, host) is expected


def test_a_policy_expires_max_age_after_it_was_fetched() -> None:
    policy = Policy("example.com", "i", "enforce", ("m.example.com",), 3600, NOW)
    assert not policy.expired(NOW + dt.timedelta(seconds=3599))
    assert policy.expired(NOW + dt.timedelta(seconds=3600))
