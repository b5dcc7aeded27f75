"""The record builder and the by-meaning comparison (appliance/services/domains/dnsrecords.py): pure, no I/O."""
from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from appliance.config import Settings
from appliance.dns import _text
from appliance.services.domains.dnsrecords import (SPF_LOOKUP_LIMIT, DomainSpec, build_records, matches, merge_spf,
                                           spf_lookup_count)

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx1y0Qk+abc/DEF0123456789ghiJKLmnoPQRstuVWXyz=="
OTHER_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz=="
DOMAIN = "example.test"


def settings(**overrides) -> Settings:
    return Settings(**{"hostname": "mail.gentbox.test", **overrides})


def spec(**overrides) -> DomainSpec:
    base = dict(name=DOMAIN, domain_use="existing_domain", dmarc_policy="quarantine",
                verification_token="tok123", dkim=(("gent", KEY),), mta_sts_id="20240101000000")
    base.update(overrides)
    return DomainSpec(**base)


def record(purpose: str, *, existing_spf: str | None = None, cfg: Settings | None = None, **spec_overrides):
    records = build_records(spec(**spec_overrides), cfg or settings(), existing_spf=existing_spf)
    found = [r for r in records if r.purpose == purpose]
    assert len(found) == 1, found
    return found[0]


# --- the builder ---------------------------------------------------------------------------
def test_builder_lists_five_required_records_and_two_optional_ones():
    records = build_records(spec(), settings())
    assert [(r.type, r.host, r.purpose, r.required) for r in records] == [
        ("MX", "@", "mx", True),
        ("TXT", "@", "spf", True),
        ("TXT", "gent._domainkey", "dkim", True),
        ("TXT", "_dmarc", "dmarc", True),
        ("TXT", "_gent-verify", "verification", True),
        ("TXT", "_mta-sts", "mta_sts", False),
        ("TXT", "_smtp._tls", "tls_rpt", False),
    ]
    by_purpose = {r.purpose: r.value for r in records}
    assert by_purpose["mx"] == "10 mail.gentbox.test."
    assert by_purpose["spf"] == "v=spf1 a:mail.gentbox.test ~all"
    assert by_purpose["dkim"] == f"v=DKIM1; k=rsa; p={KEY}"
    assert by_purpose["dmarc"].startswith("v=DMARC1; p=quarantine;")
    assert "rua=mailto:postmaster@example.test" in by_purpose["dmarc"]
    assert by_purpose["verification"] == "gent-verify=tok123"
    assert by_purpose["tls_rpt"] == "v=TLSRPTv1; rua=mailto:postmaster@example.test"
    assert by_purpose["mta_sts"] == "v=STSv1; id=20240101000000"


def test_builder_uses_the_public_addresses_when_set():
    value = record("spf", cfg=settings(public_ipv4="203.0.113.7", public_ipv6="2001:db8::7")).value
    assert value == "v=spf1 ip4:203.0.113.7 ip6:2001:db8::7 ~all"


def test_dedicated_subdomain_gets_a_hard_fail_spf():
    assert record("spf", domain_use="dedicated_subdomain").value == "v=spf1 a:mail.gentbox.test -all"


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
def test_dmarc_record_carries_the_domains_policy(policy):
    value = record("dmarc", dmarc_policy=policy).value
    assert value.startswith(f"v=DMARC1; p={policy};")


def test_every_listed_dkim_selector_gets_a_record():
    records = build_records(spec(dkim=(("gent", KEY), ("gent2", OTHER_KEY))), settings())
    assert [(r.host, r.value) for r in records if r.purpose == "dkim"] == [
        ("gent._domainkey", f"v=DKIM1; k=rsa; p={KEY}"), ("gent2._domainkey", f"v=DKIM1; k=rsa; p={OTHER_KEY}")]


def test_record_fqdn():
    records = {r.purpose: r for r in build_records(spec(), settings())}
    assert records["mx"].fqdn(DOMAIN) == "example.test"
    assert records["dkim"].fqdn(DOMAIN) == "gent._domainkey.example.test"
    assert records["tls_rpt"].fqdn(DOMAIN) == "_smtp._tls.example.test"


# --- SPF merging ---------------------------------------------------------------------------
@pytest.mark.parametrize("existing, merged", [
    ("v=spf1 include:_spf.example.test ~all", "v=spf1 include:_spf.example.test a:mail.gentbox.test ~all"),
    ("v=spf1 mx include:_spf.google.com -all", "v=spf1 mx include:_spf.google.com a:mail.gentbox.test -all"),
    ("v=spf1 ip4:192.0.2.1 ?all", "v=spf1 ip4:192.0.2.1 a:mail.gentbox.test ?all"),
    ("v=spf1 +mx +all", "v=spf1 +mx a:mail.gentbox.test +all"),
    ("v=spf1 mx all", "v=spf1 mx a:mail.gentbox.test all"),
    ("v=spf1 mx redirect=_spf.example.test", "v=spf1 mx a:mail.gentbox.test redirect=_spf.example.test"),
    ("v=spf1 mx", "v=spf1 mx a:mail.gentbox.test"),
    ("V=SPF1 MX -ALL", "v=spf1 MX a:mail.gentbox.test -ALL"),
    # a copy of ours after `all` authorises nothing: it moves in front of `all`
    ("v=spf1 mx ~all a:mail.gentbox.test", "v=spf1 mx a:mail.gentbox.test ~all"),
])
def test_spf_merge_keeps_mechanisms_and_qualifier_and_adds_ours_before_all(existing, merged):
    assert record("spf", existing_spf=existing).value == merged


@pytest.mark.parametrize("existing", [
    "v=spf1 mx a:mail.gentbox.test ~all",
    "v=spf1 mx +a:mail.gentbox.test ~all",
    "v=spf1 mx A:MAIL.GENTBOX.TEST ~all",
])
def test_spf_merge_adds_nothing_when_ours_is_already_there(existing):
    value = record("spf", existing_spf=existing).value
    assert value.lower().count("a:mail.gentbox.test") == 1, value
    assert value.split()[1:] == existing.split()[1:]


def test_spf_merge_adds_only_the_missing_addresses():
    cfg = settings(public_ipv4="203.0.113.7", public_ipv6="2001:db8::7")
    value = record("spf", existing_spf="v=spf1 ip4:203.0.113.7 -all", cfg=cfg).value
    assert value == "v=spf1 ip4:203.0.113.7 ip6:2001:db8::7 -all"


def test_merge_spf_without_an_existing_record():
    assert merge_spf(None, ["ip4:192.0.2.9"], "~all") == "v=spf1 ip4:192.0.2.9 ~all"


def test_spf_warns_when_the_merged_record_passes_ten_lookups():
    includes = " ".join(f"include:_spf{i}.example.test" for i in range(SPF_LOOKUP_LIMIT))
    spf = record("spf", existing_spf=f"v=spf1 {includes} ~all")  # ten includes + our a: = eleven
    assert spf_lookup_count(spf.value) == SPF_LOOKUP_LIMIT + 1
    assert len(spf.warnings) == 1 and "11 DNS lookups" in spf.warnings[0]


def test_spf_does_not_warn_at_exactly_ten_lookups():
    includes = " ".join(f"include:_spf{i}.example.test" for i in range(SPF_LOOKUP_LIMIT - 1))
    spf = record("spf", existing_spf=f"v=spf1 {includes} ~all")
    assert spf_lookup_count(spf.value) == SPF_LOOKUP_LIMIT
    assert spf.warnings == ()
    # ip4:/ip6: cost no lookup: with the public address set, ten includes stay at ten
    includes = " ".join(f"include:_spf{i}.example.test" for i in range(SPF_LOOKUP_LIMIT))
    spf = record("spf", existing_spf=f"v=spf1 {includes} ~all", cfg=settings(public_ipv4="203.0.113.7"))
    assert spf_lookup_count(spf.value) == SPF_LOOKUP_LIMIT and spf.warnings == ()


def test_spf_lookup_count_counts_every_kind_of_lookup():
    assert spf_lookup_count("v=spf1 a mx ptr a:x.test mx:y.test/24 exists:%{i}.z.test include:q.test "
                            "redirect=r.test ip4:192.0.2.1 ip6:2001:db8::1 ~all") == 8
    assert spf_lookup_count("v=spf1 ip4:192.0.2.1 -all") == 0


# --- SPF comparison ------------------------------------------------------------------------
def test_spf_ok_when_ours_is_in_the_published_record():
    rec = record("spf", existing_spf="v=spf1 include:_spf.example.test ~all")
    assert matches(rec, ["v=spf1 include:_spf.example.test a:mail.gentbox.test ~all"], DOMAIN)
    # case and an explicit + qualifier do not change the meaning
    assert matches(rec, ["v=spf1 INCLUDE:_spf.example.test +a:Mail.Gentbox.Test ~all"], DOMAIN)


def test_spf_ok_when_existing_mechanisms_carry_an_explicit_plus():
    existing = "v=spf1 +mx +include:_spf.example.test ~all"
    rec = record("spf", existing_spf=existing)
    assert rec.value == "v=spf1 +mx +include:_spf.example.test a:mail.gentbox.test ~all"
    assert matches(rec, [rec.value], DOMAIN)


def test_spf_mismatch_when_ours_is_missing_softfailed_or_after_all():
    rec = record("spf")
    assert not matches(rec, ["v=spf1 include:_spf.example.test ~all"], DOMAIN)
    assert not matches(rec, ["v=spf1 ~a:mail.gentbox.test ~all"], DOMAIN)
    # receivers stop at `all`: a mechanism after it authorises nothing
    assert not matches(rec, ["v=spf1 ~all a:mail.gentbox.test"], DOMAIN)


def test_two_spf_records_are_a_mismatch():
    rec = record("spf")
    assert not matches(rec, ["v=spf1 a:mail.gentbox.test ~all", "v=spf1 mx -all"], DOMAIN)


# --- DKIM comparison -----------------------------------------------------------------------
@pytest.mark.parametrize("published", [
    f"v=DKIM1; k=rsa; p={KEY}",
    f"v=DKIM1;k=rsa;p={KEY}",
    f"  v=DKIM1 ;  k=rsa ;  p={KEY} ;",
    f"v=DKIM1; k=rsa; p={KEY[:20]} {KEY[20:40]}\t{KEY[40:]}",  # whitespace inside p=
    f"p={KEY}; v=DKIM1; k=rsa",  # tag order
    f"V=DKIM1; K=RSA; P={KEY}",  # case of tags
    f"k=rsa; p={KEY}",  # v= and k= have defaults
    f"p={KEY}",
    f"v=DKIM1; h=sha256; k=rsa; t=s; p={KEY}",  # extra tags
])
def test_dkim_compares_by_meaning(published):
    assert matches(record("dkim"), [published], DOMAIN)


@pytest.mark.parametrize("published", [
    f"v=DKIM1; k=rsa; p={OTHER_KEY}",  # another key
    f"v=DKIM1; k=rsa; p={KEY.lower()}",  # base64 is case-sensitive
    f"v=DKIM1; k=rsa; p={KEY[:-4]}",  # truncated
    f"v=DKIM1; k=ed25519; p={KEY}",
    "v=DKIM1; k=rsa; p=",  # revoked key
    f"v=DKIM2; k=rsa; p={KEY}",
])
def test_dkim_mismatch(published):
    assert not matches(record("dkim"), [published], DOMAIN)


def test_dkim_value_split_over_several_strings_is_joined_by_the_resolver():
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT,
                                f'"v=DKIM1; k=rsa; " "p={KEY[:30]}" "{KEY[30:]}"')
    joined = _text(rdata)
    assert joined == f"v=DKIM1; k=rsa; p={KEY}"
    assert matches(record("dkim"), [joined], DOMAIN)


# --- DMARC comparison ----------------------------------------------------------------------
@pytest.mark.parametrize("want, published, ok", [
    ("quarantine", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test", True),
    ("quarantine", "v=DMARC1; p=reject", True),  # stricter is fine
    ("quarantine", "v=DMARC1; p=none", False),
    ("reject", "v=DMARC1; p=quarantine", False),
    ("reject", "v=DMARC1; p=reject", True),
    ("none", "v=DMARC1; p=none", True),
    ("none", "v=DMARC1; p=quarantine", True),
    ("quarantine", "p=quarantine; v=DMARC1", True),  # tag order
    ("quarantine", "V=dmarc1; P=Quarantine", True),  # case
    ("quarantine", "v=DMARC1 ;  p = reject ; pct=100", True),  # whitespace
    ("quarantine", "p=quarantine", False),  # v=DMARC1 is mandatory
    ("quarantine", "v=DMARC1; p=bogus", False),
])
def test_dmarc_compares_policy_strictness(want, published, ok):
    assert matches(record("dmarc", dmarc_policy=want), [published], DOMAIN) is ok


# --- MX comparison -------------------------------------------------------------------------
@pytest.mark.parametrize("published, ok", [
    (["10 mail.gentbox.test"], True),
    (["10 mail.gentbox.test."], True),  # trailing dot
    (["10 MAIL.GentBox.TEST."], True),  # case
    (["5 mail.gentbox.test"], True),  # any preference
    (["20 backup.example.test", "10 mail.gentbox.test"], True),
    (["10 mail.gentbox.test", "10 other.example.test"], True),  # equal lowest preference
    (["10 other.example.test", "20 mail.gentbox.test"], False),  # mail goes elsewhere first
    (["10 other.example.test"], False),
    (["10 mail.gentbox.test.evil.test"], False),
])
def test_mx_compares_host_names_by_meaning(published, ok):
    assert matches(record("mx"), published, DOMAIN) is ok


# --- verification, MTA-STS, TLS-RPT --------------------------------------------------------
def test_verification_token_must_be_exact():
    rec = record("verification")
    assert matches(rec, ["gent-verify=tok123"], DOMAIN)
    assert matches(rec, ["other=1", "gent-verify=tok123 "], DOMAIN)
    assert not matches(rec, ["gent-verify=tok124"], DOMAIN)
    assert not matches(rec, ["gent-verify=TOK123"], DOMAIN)


def test_optional_records_compare_by_version_tag():
    assert matches(record("mta_sts"), ["v=STSv1; id=anything"], DOMAIN)
    assert not matches(record("mta_sts"), ["v=STSv2; id=1"], DOMAIN)
    assert matches(record("tls_rpt"), ["V=tlsrptv1; rua=mailto:x@example.test"], DOMAIN)
