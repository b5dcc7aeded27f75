"""SPF, DKIM and DMARC of received mail against real DNS: dnsmasq on loopback serves the test
domains' SPF, DKIM key and DMARC records; mail is signed with dkimpy; every lookup goes through
appliance.dns.Resolver. A UDP socket that never answers stands in for a DNS server that times out.
"""
from __future__ import annotations

import email
import email.policy
import socket
import time

import dkim
import pytest

from appliance.dns import Outcome, Resolver
from appliance.services.mail.mailauth import AuthResult, authenticate_message
from tests.helpers import new_dkim_key

SENDER_IP = "192.0.2.10"  # the test domains' SPF records allow this address
STRANGER_IP = "198.51.100.7"
AUTHSERV = "mail.gentbox.test"
SPF_ALLOW = f"v=spf1 ip4:{SENDER_IP} -all"


@pytest.fixture
def backend() -> str:
    """Mail authentication never touches the store: one database backend is enough here."""
    return "sqlite"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    """(private key PEM, the DKIM TXT record publishing its public half)."""
    return new_dkim_key()


RECORDS = [
    ("example.test", SPF_ALLOW),
    ("mail.example.test", SPF_ALLOW),
    ("helo.example.test", SPF_ALLOW),
    ("_dmarc.example.test", "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r"),
    ("soft.test", f"v=spf1 ip4:{SENDER_IP} ~all"),
    ("viamx.test", "v=spf1 mx -all"),
    ("mail.strict.test", SPF_ALLOW),
    ("_dmarc.strict.test", "v=DMARC1; p=quarantine; adkim=s; aspf=s"),
    ("other.test", SPF_ALLOW),
]
KEY_DOMAINS = ("example.test", "mail.example.test", "strict.test", "mail.strict.test", "other.test")


@pytest.fixture
def resolver(dns_server, key, make_settings) -> Resolver:
    for name, value in RECORDS:
        dns_server.publish(name, "TXT", value, restart=False)
    for domain in KEY_DOMAINS:
        dns_server.publish(f"sel._domainkey.{domain}", "TXT", key[1], restart=False)
    dns_server.publish("viamx.test", "MX", "10 mx1.viamx.test", restart=False)
    dns_server.publish("mx1.viamx.test", "A", SENDER_IP, restart=False)
    dns_server.restart()
    return Resolver(make_settings(dns_servers=dns_server.address, dns_timeout=2.0))


def message(from_address: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: Someone <{from_address}>\r\n"
            f"To: agent@gentbox.test\r\n"
            f"Subject: A test\r\n"
            f"Message-ID: <1@{from_address.split('@')[1]}>\r\n\r\n").encode() + body


def signed(raw: bytes, domain: str, key: tuple[bytes, str], selector: str = "sel") -> bytes:
    header = dkim.sign(raw, selector.encode(), domain.encode(), key[0],
                       include_headers=[b"from", b"to", b"subject", b"message-id"])
    return header + raw


def check(resolver: Resolver, raw: bytes, mail_from: str, *, client_ip: str = SENDER_IP,
          helo: str = "[192.0.2.10]") -> AuthResult:
    return authenticate_message(raw, client_ip=client_ip, helo=helo, mail_from=mail_from, resolver=resolver,
                                authserv_id=AUTHSERV)


def test_spf_pass_fail_softfail_and_none(resolver):
    raw = message("someone@example.test")
    assert check(resolver, raw, "bounce@example.test").spf == "pass"
    assert check(resolver, raw, "bounce@example.test", client_ip=STRANGER_IP).spf == "fail"  # -all
    assert check(resolver, raw, "bounce@soft.test", client_ip=STRANGER_IP).spf == "softfail"  # ~all
    assert check(resolver, raw, "bounce@soft.test").spf == "pass"
    assert check(resolver, raw, "bounce@nospf.test").spf == "none"  # no record at all
    # the mx mechanism: MX then A records, both through our resolver
    assert check(resolver, raw, "bounce@viamx.test").spf == "pass"
    assert check(resolver, raw, "bounce@viamx.test", client_ip=STRANGER_IP).spf == "fail"
    # an IPv4-mapped IPv6 peer is the IPv4 address it maps
    assert check(resolver, raw, "bounce@example.test", client_ip="::ffff:192.0.2.10").spf == "pass"

    result = check(resolver, raw, "bounce@example.test", helo="helo.example.test")
    assert (result.spf, result.spf_domain, result.spf_helo) == ("pass", "example.test", "pass")
    assert b"spf=pass smtp.mailfrom=bounce@example.test;" in result.header()
    assert b"spf=pass smtp.helo=helo.example.test;" in result.header()


def test_the_null_sender_is_checked_by_its_helo_name(resolver):
    raw = message("mailer-daemon@example.test")
    bounce = check(resolver, raw, "", helo="helo.example.test")
    assert (bounce.spf, bounce.spf_domain, bounce.to_dict()["spf_domain"]) == ("pass", "helo.example.test",
                                                                               "helo.example.test")
    assert b"spf=pass smtp.helo=helo.example.test;" in bounce.header()
    assert check(resolver, raw, "<>", helo="helo.example.test", client_ip=STRANGER_IP).spf == "fail"
    assert check(resolver, raw, "", helo="[192.0.2.10]").spf == "none"  # an address literal names no domain


def test_dkim_pass_and_fail_when_the_body_is_altered_after_signing(resolver, key):
    raw = signed(message("someone@example.test"), "example.test", key)
    good = check(resolver, raw, "bounce@example.test")
    assert good.dkim == "pass"
    assert [(s.domain, s.selector, s.result) for s in good.dkim_signatures] == [("example.test", "sel", "pass")]
    assert good.to_dict()["dkim_signatures"] == [{"domain": "example.test", "selector": "sel", "result": "pass"}]

    tampered = check(resolver, raw.replace(b"Hello.", b"Hullo."), "bounce@example.test")
    assert tampered.dkim == "fail"
    assert [s.result for s in tampered.dkim_signatures] == ["fail"]
    assert b"dkim=fail header.d=example.test header.s=sel;" in tampered.header()

    unsigned = check(resolver, message("someone@example.test"), "bounce@example.test")
    assert (unsigned.dkim, unsigned.dkim_signatures) == ("none", ())
    missing_key = check(resolver, signed(message("someone@example.test"), "example.test", key, "gone"),
                        "bounce@example.test")
    assert missing_key.dkim == "permerror"

    # every signature is checked: one that verifies is enough for dkim=pass
    both = signed(signed(message("someone@example.test"), "other.test", key), "example.test", key, "gone")
    result = check(resolver, both, "bounce@other.test")
    assert result.dkim == "pass"
    assert [(s.domain, s.selector, s.result) for s in result.dkim_signatures] == [
        ("example.test", "gone", "permerror"), ("other.test", "sel", "pass")]


def test_dmarc_passes_with_an_aligned_dkim_or_spf_pass(resolver, key):
    raw = signed(message("someone@example.test"), "example.test", key)
    by_dkim = check(resolver, raw, "bounce@elsewhere.test")  # SPF none: DKIM alone aligns
    assert (by_dkim.spf, by_dkim.dkim, by_dkim.dmarc, by_dkim.dmarc_aligned) == ("none", "pass", "pass", True)
    assert (by_dkim.header_from, by_dkim.dmarc_policy) == ("example.test", "reject")

    by_spf = check(resolver, message("someone@example.test"), "bounce@example.test")  # no signature
    assert (by_spf.spf, by_spf.dkim, by_spf.dmarc, by_spf.dmarc_aligned) == ("pass", "none", "pass", True)

    # the stored copy's header, as a mail reader parses it
    stored = email.message_from_bytes(by_dkim.header() + raw, policy=email.policy.default)
    value = " ".join(str(stored["Authentication-Results"]).split())
    assert value == ("mail.gentbox.test; spf=none smtp.mailfrom=bounce@elsewhere.test; "
                     "dkim=pass header.d=example.test header.s=sel; dmarc=pass (p=reject) header.from=example.test")
    assert by_dkim.to_dict() | {"dkim_signatures": None} == {
        "spf": "none", "spf_domain": "elsewhere.test", "spf_helo": "none", "dkim": "pass", "dkim_signatures": None,
        "dmarc": "pass", "dmarc_aligned": True, "dmarc_policy": "reject", "header_from": "example.test"}


def test_dmarc_fails_when_the_from_domain_is_not_the_one_that_authenticated(resolver, key):
    # SPF and DKIM both pass, but for other.test: the From header claims example.test
    spoof = signed(message("ceo@example.test"), "other.test", key)
    result = check(resolver, spoof, "bounce@other.test")
    assert (result.spf, result.dkim) == ("pass", "pass")
    assert (result.dmarc, result.dmarc_aligned, result.dmarc_policy) == ("fail", False, "reject")
    assert result.to_dict()["dmarc_aligned"] is False
    assert b"\tdmarc=fail (p=reject) header.from=example.test\r\n" in result.header()
    # a From domain without a DMARC record: no policy, but the alignment is still plain to see
    plain = check(resolver, message("someone@other.test"), "bounce@example.test")
    assert (plain.dmarc, plain.dmarc_aligned, plain.dmarc_policy) == ("none", False, None)
    assert check(resolver, message("someone@other.test"), "bounce@other.test").dmarc_aligned is True
    # two From headers: which one the reader sees is unknowable, so DMARC cannot pass
    doubled = b"From: ceo@example.test\r\n" + signed(message("someone@other.test"), "other.test", key)
    assert check(resolver, doubled, "bounce@other.test").dmarc == "permerror"


def test_relaxed_alignment_accepts_subdomains_and_strict_does_not(resolver, key):
    # example.test asks for relaxed alignment: mail.example.test aligns with example.test
    relaxed = check(resolver, signed(message("someone@example.test"), "mail.example.test", key),
                    "bounce@mail.example.test")
    assert (relaxed.spf, relaxed.dkim, relaxed.dmarc, relaxed.dmarc_aligned) == ("pass", "pass", "pass", True)
    # strict.test asks for strict alignment: the same shape fails there...
    strict = check(resolver, signed(message("someone@strict.test"), "mail.strict.test", key),
                   "bounce@mail.strict.test")
    assert (strict.spf, strict.dkim, strict.dmarc, strict.dmarc_aligned) == ("pass", "pass", "fail", False)
    assert strict.dmarc_policy == "quarantine"
    # ...and passes with the exact domain
    exact = check(resolver, signed(message("someone@strict.test"), "strict.test", key), "bounce@mail.strict.test")
    assert (exact.dmarc, exact.dmarc_aligned) == ("pass", True)
    # a subdomain without a record of its own falls back to its organisational domain's, and its sp=
    news = check(resolver, signed(message("someone@news.example.test"), "example.test", key), "bounce@x.test")
    assert (news.header_from, news.dmarc, news.dmarc_policy) == ("news.example.test", "pass", "quarantine")
    spoofed_news = check(resolver, message("someone@news.example.test"), "bounce@other.test")
    assert (spoofed_news.dmarc, spoofed_news.dmarc_policy) == ("fail", "quarantine")


def test_a_dns_timeout_is_temperror_for_each_method(make_settings, key):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes queries, never answers
        silent.bind(("127.0.0.1", 0))
        resolver = Resolver(make_settings(dns_servers=f"127.0.0.1:{silent.getsockname()[1]}", dns_timeout=0.3))
        assert resolver.query("example.test", "TXT").outcome is Outcome.TIMEOUT
        raw = signed(message("someone@example.test"), "example.test", key)
        started = time.monotonic()
        result = check(resolver, raw, "bounce@example.test", helo="helo.example.test")
        elapsed = time.monotonic() - started
    assert (result.spf, result.spf_helo, result.dkim, result.dmarc) == ("temperror",) * 4
    assert [s.result for s in result.dkim_signatures] == ["temperror"]
    assert result.dmarc_aligned is False and result.dmarc_policy is None
    header = result.header()
    for method in (b"spf=temperror smtp.mailfrom=", b"spf=temperror smtp.helo=", b"dkim=temperror header.d=",
                   b"dmarc=temperror header.from=example.test"):
        assert method in header
    assert elapsed < 4 * 0.3 + 1.0  # one lifetime per method, no retry storm
