"""The pure parts of mail authentication: DMARC records, alignment, the From domain, and the
Authentication-Results header (format, folding, and no header injection from any value)."""
from __future__ import annotations

import email
import email.policy
import json

import pytest

from appliance.services.mail.mailauth import (AuthResult, DkimSignature, aligned, header_from_domain,
                                         organizational_domain, parse_dmarc_record)


def result(**overrides) -> AuthResult:
    values = dict(authserv_id="mail.gentbox.test", spf="pass", spf_domain="example.test", spf_scope="mailfrom",
                  spf_helo="none", mail_from="bounce@example.test", helo="[192.0.2.10]", dkim="pass",
                  dkim_signatures=(DkimSignature("example.test", "gent", "pass"),), dmarc="pass",
                  dmarc_aligned=True, dmarc_policy="reject", header_from="example.test")
    values.update(overrides)
    return AuthResult(**values)


def parsed_header(raw_header: bytes):
    """The header as a mail reader sees it, in a message of its own."""
    message = email.message_from_bytes(raw_header + b"Subject: x\r\n\r\nbody\r\n", policy=email.policy.default)
    return message


def test_dmarc_records_are_parsed_and_only_v_dmarc1_first_counts():
    assert parse_dmarc_record("v=DMARC1; p=reject; adkim=s; aspf=r; rua=mailto:d@example.test") == {
        "v": "DMARC1", "p": "reject", "adkim": "s", "aspf": "r", "rua": "mailto:d@example.test"}
    assert parse_dmarc_record("v=DMARC1;p=none") == {"v": "DMARC1", "p": "none"}
    assert parse_dmarc_record("v = DMARC1 ; P = quarantine ;") == {"v": "DMARC1", "p": "quarantine"}
    assert parse_dmarc_record("p=reject; v=DMARC1") is None  # v= must come first
    assert parse_dmarc_record("v=spf1 -all") is None
    assert parse_dmarc_record("v=DMARC10; p=reject") is None


def test_organisational_domains_come_from_the_public_suffix_list():
    assert organizational_domain("mail.example.test") == "example.test"
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("example.co.uk") == "example.co.uk"


def test_relaxed_alignment_is_by_organisational_domain_and_strict_by_exact_name():
    assert aligned("mail.example.test", "example.test", "r")
    assert aligned("example.test", "news.example.test", "r")
    assert not aligned("mail.example.test", "example.test", "s")
    assert aligned("example.test", "example.test", "s")
    assert not aligned("example.org", "example.test", "r")
    # two registrants under one public suffix are not the same organisation
    assert not aligned("alice.co.uk", "bob.co.uk", "r")
    assert not aligned(None, "example.test", "r")


def test_the_from_domain_is_the_single_from_header_domain():
    assert header_from_domain(b"From: Alice <alice@Example.TEST>\r\nTo: b@x.test\r\n\r\nbody") == "example.test"
    assert header_from_domain(b"From: a@example.test, b@example.test\r\n\r\n") == "example.test"
    assert header_from_domain("From: a@bücher.test\r\n\r\n".encode()) == "xn--bcher-kva.test"
    # two From headers, two domains, none: DMARC cannot say which one the reader sees
    assert header_from_domain(b"From: a@example.test\r\nFrom: a@evil.test\r\n\r\n") is None
    assert header_from_domain(b"From: a@example.test, b@evil.test\r\n\r\n") is None
    assert header_from_domain(b"To: b@example.test\r\n\r\nFrom: a@example.test\r\n") is None
    assert header_from_domain(b"From: <<<@@@>>>\r\n\r\n") is None
    assert header_from_domain(b"From: \xff\xfe@\xff.test\r\n\r\n") is None


def test_the_header_names_each_method_with_its_identity():
    header = result(dkim_signatures=(DkimSignature("example.test", "gent", "pass"),
                                     DkimSignature("other.test", "s1", "fail"))).header()
    assert header == (b"Authentication-Results: mail.gentbox.test;\r\n"
                      b"\tspf=pass smtp.mailfrom=bounce@example.test;\r\n"
                      b"\tdkim=pass header.d=example.test header.s=gent;\r\n"
                      b"\tdkim=fail header.d=other.test header.s=s1;\r\n"
                      b"\tdmarc=pass (p=reject) header.from=example.test\r\n")
    value = str(parsed_header(header)["Authentication-Results"])
    assert value.startswith("mail.gentbox.test;\tspf=pass") and value.endswith("header.from=example.test")


def test_the_header_for_null_sender_no_signature_and_no_from_domain():
    header = result(mail_from="", spf_scope="helo", spf="softfail", spf_helo="softfail", spf_domain="mx.example.test",
                    helo="mx.example.test", dkim="none", dkim_signatures=(), dmarc="permerror",
                    dmarc_aligned=False, dmarc_policy=None, header_from=None).header()
    assert header == (b"Authentication-Results: mail.gentbox.test;\r\n"
                      b"\tspf=softfail smtp.helo=mx.example.test;\r\n"
                      b"\tdkim=none;\r\n"
                      b"\tdmarc=permerror\r\n")
    # with a MAIL FROM and a HELO name, both SPF results are written
    both = result(helo="mx.example.test", spf_helo="neutral").header()
    assert b"\tspf=pass smtp.mailfrom=bounce@example.test;\r\n\tspf=neutral smtp.helo=mx.example.test;\r\n" in both


@pytest.mark.parametrize("evil", [
    "a@example.test\r\nX-Injected: yes",
    "a@example.test\nX-Injected: yes",
    "a@example.test\rX-Injected: yes",
    'a"b\\@example.test;\r\n dmarc=pass',
    "\r\n\r\nX-Injected: yes",
])
def test_no_value_can_start_a_header_of_its_own_or_end_the_header_block(evil):
    header = result(mail_from=evil, helo=evil, authserv_id=evil, spf_scope="mailfrom",
                    dkim_signatures=(DkimSignature(evil, evil, "fail"),), header_from=evil).header()
    assert header.endswith(b"\r\n") and header.count(b"\r\n") == header.count(b"\n") == header.count(b"\r")
    lines = header.split(b"\r\n")[:-1]
    assert lines[0].startswith(b"Authentication-Results: ")
    assert all(line[:1] in (b"\t", b" ") for line in lines[1:])  # every other line is a continuation
    assert all(len(line) <= 998 for line in lines)
    message = parsed_header(header)
    assert message["X-Injected"] is None
    assert list(message.keys()) == ["Authentication-Results", "Subject"]
    assert str(message["Subject"]) == "x"


def test_quoted_values_escape_quotes_and_backslashes():
    header = result(mail_from='we"ird\\local@example.test').header()
    assert b'smtp.mailfrom="we\\"ird\\\\local@example.test"' in header


def test_long_results_fold_between_items_and_absurd_values_are_left_out():
    long_domain = ".".join(["a" * 60] * 4)  # 243 characters, a legal name
    header = result(dkim_signatures=(DkimSignature(long_domain, "selector-" + "x" * 50, "pass"),),
                    mail_from="x" * 300 + "@example.test").header()
    lines = header.split(b"\r\n")[:-1]
    assert all(line[:1] == b"\t" for line in lines[1:])
    assert f"\theader.d={long_domain}".encode() in lines
    assert b"smtp.mailfrom" not in header  # over 256 characters: no real envelope address is that long
    unfolded = header.replace(b"\r\n\t", b" ")
    assert f"dkim=pass header.d={long_domain} header.s=selector-".encode() in unfolded


def test_to_dict_is_the_message_authentication_field():
    data = result(dmarc="fail", dmarc_aligned=False, dmarc_policy="quarantine").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {"spf": "pass", "spf_domain": "example.test", "spf_helo": "none", "dkim": "pass",
                    "dkim_signatures": [{"domain": "example.test", "selector": "gent", "result": "pass"}],
                    "dmarc": "fail", "dmarc_aligned": False, "dmarc_policy": "quarantine",
                    "header_from": "example.test"}
