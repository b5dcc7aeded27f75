"""The DMARC decision and the removal of forged Authentication-Results (issue 14, point 6):
appliance/services/mail/mailauth.py disposition() and strip_authentication_results()."""
from __future__ import annotations

import pytest

from appliance.services.mail.mailauth import disposition, strip_authentication_results

OURS = "mail.gentbox.test"


@pytest.mark.parametrize("field", [
    b"Authentication-Results: mail.gentbox.test; spf=pass\r\n",
    b"AUTHENTICATION-RESULTS: Mail.GentBox.Test; dkim=pass\r\n",
    b"Authentication-Results:mail.gentbox.test;dkim=pass\r\n",
    b"Authentication-Results: mail.gentbox.test. ; none\r\n",
    b"Authentication-Results: mail.gentbox.test 1; spf=pass\r\n",
    b"Authentication-Results : (obsolete space) mail.gentbox.test; spf=pass\r\n",
    b"Authentication-Results:\r\n\tmail.gentbox.test;\r\n\tdkim=pass header.d=bank.test\r\n",
    b"Authentication-Results: (a (nested) comment) \"mail.gentbox.test\"; dmarc=pass\r\n",
    b"Authentication-Results: mail.gentbox.test\r\n",
])
def test_each_spelling_of_our_authserv_id_is_removed(field: bytes) -> None:
    raw = b"Received: from x\r\n" + field + b"Subject: hi\r\n\r\nbody\r\n"
    assert strip_authentication_results(raw, OURS) == b"Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"


def test_others_fields_and_the_body_are_kept_byte_for_byte() -> None:
    raw = (b"Authentication-Results: mail.gentbox.test; spf=pass\r\n"
           b"Authentication-Results: mx.elsewhere.test;\r\n\tspf=pass\r\n"
           b"Authentication-Results: mail.gentbox.test.evil.test; spf=pass\r\n"
           b"Authentication-Results: (mail.gentbox.test) other.test; spf=pass\r\n"
           b"X-Note: Authentication-Results: mail.gentbox.test; in a value\r\n"
           b"Authentication-Results: MAIL.gentbox.test; dkim=pass\r\n"
           b"\r\nAuthentication-Results: mail.gentbox.test; in the body\r\n")
    assert strip_authentication_results(raw, OURS) == (
        b"Authentication-Results: mx.elsewhere.test;\r\n\tspf=pass\r\n"
        b"Authentication-Results: mail.gentbox.test.evil.test; spf=pass\r\n"
        b"Authentication-Results: (mail.gentbox.test) other.test; spf=pass\r\n"
        b"X-Note: Authentication-Results: mail.gentbox.test; in a value\r\n"
        b"\r\nAuthentication-Results: mail.gentbox.test; in the body\r\n")
    clean = b"Subject: nothing to do\r\n\r\nbody\r\n"
    assert strip_authentication_results(clean, OURS) is clean
    headless = b"\r\nAuthentication-Results: mail.gentbox.test; x\r\n"
    assert strip_authentication_results(headless, OURS) is headless


def results(**overrides) -> dict:
    values = {"spf": "none", "spf_domain": "elsewhere.test", "dkim": "none", "dkim_signatures": [],
              "dmarc": "fail", "dmarc_aligned": False, "dmarc_policy": "reject", "header_from": "sender.test"}
    return {**values, **overrides}


def decide(found: dict, *, reject_action: str = "reject", hosted: tuple[str, ...] = ()) -> str:
    return disposition(found, reject_action=reject_action, hosted=lambda domain: domain in hosted).action


def test_a_dmarc_fail_meets_the_published_policy() -> None:
    assert decide(results()) == "reject"
    assert decide(results(), reject_action="quarantine") == "quarantine"
    assert decide(results(dmarc_policy="quarantine")) == "quarantine"
    assert decide(results(dmarc_policy="none")) == "deliver"
    assert decide(results(dmarc="pass", dmarc_aligned=True)) == "deliver"
    assert decide(results(dmarc="temperror", dmarc_policy=None)) == "deliver"
    assert decide(results(dmarc="none", dmarc_policy=None)) == "deliver"
    assert decide({}) == "deliver"  # not checked (no authenticator)
    assert disposition(results(dmarc_policy="quarantine"), reject_action="reject",
                       hosted=lambda _d: False).labels == ("suspicious",)


def test_a_hosted_from_domain_must_be_authenticated_whatever_it_publishes() -> None:
    hosted = ("sender.test",)
    for policy in (None, "none", "quarantine", "reject"):
        assert decide(results(dmarc="none" if policy is None else "fail", dmarc_policy=policy),
                      reject_action="quarantine", hosted=hosted) == "reject"
    assert decide(results(dmarc="none", dmarc_policy=None, dmarc_aligned=True), hosted=hosted) == "deliver"
    # an aligned method that could not be checked for now: try again later, not a permanent refusal
    assert decide(results(dmarc_policy=None, dkim_signatures=[
        {"domain": "sender.test", "selector": "gent1", "result": "temperror"}]), hosted=hosted) == "defer"
    assert decide(results(dmarc_policy=None, spf="temperror", spf_domain="sender.test"), hosted=hosted) == "defer"
    # a temperror for some other domain changes nothing
    assert decide(results(dmarc_policy=None, dkim_signatures=[
        {"domain": "other.test", "selector": "s", "result": "temperror"}]), hosted=hosted) == "reject"
