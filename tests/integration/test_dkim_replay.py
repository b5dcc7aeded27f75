"""DKIM replay (issue 14, point 3): what the worker delivers carries a signature that an
independent verifier (Perl's Mail::DKIM, against the test dnsmasq) accepts, that breaks when
anyone adds a Reply-To, a Cc or a second Subject (every signed field over-signed, present or not),
and that expires (x=) a week after it was made.
"""
from __future__ import annotations

import re

import pytest

from tests.integration.remote_mail import independent_dkim_check, remote_world  # noqa: F401
from tests.integration.test_outbound_delivery import SENDER, out  # noqa: F401

WEEK = 7 * 86400
ADDED = ["Reply-To: Attacker <pay@attacker.example>", "Cc: victim@partner.example", "Subject: Urgent: new bank details",
         "In-Reply-To: <forged@attacker.example>"]


def _with_field(raw: bytes, line: str, *, at_top: bool) -> bytes:
    """raw with one more header field, below the signature or at the end of the header."""
    head, body = raw.split(b"\r\n\r\n", 1)
    if at_top:
        return line.encode() + b"\r\n" + raw
    return head + b"\r\n" + line.encode() + b"\r\n\r\n" + body


def _tags(raw: bytes) -> list[dict[str, str]]:
    """Each DKIM-Signature's tags (two since issue 26: RSA and Ed25519)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    signatures = re.findall(r"^DKIM-Signature:(.*?)(?=\r\n[^ \t]|\Z)", head, flags=re.S | re.M)
    return [dict(part.split("=", 1) for part in "".join(s.split()).split(";") if "=" in part) for s in signatures]


@pytest.fixture
def delivered(out) -> bytes:  # noqa: F811
    """A message as the remote MX received it from the worker."""
    first, _ = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first)])
    out.send(to=[{"email": "ann@partner.example"}], subject="Invoice 42", text_body="Please pay invoice 42.")
    assert out.run() == 1
    [delivery] = first.deliveries
    return delivery.data


def test_every_signed_field_is_signed_once_more_than_it_occurs(out, delivered) -> None:  # noqa: F811
    verdict = independent_dkim_check(delivered, out.remote.dns_port)
    assert verdict["result"] == "pass", verdict
    assert sorted(s["a"] for s in verdict["signatures"]) == ["ed25519-sha256", "rsa-sha256"]
    for signature in verdict["signatures"]:
        signed = [name.strip().lower() for name in signature["h"].split(":")]
        for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type"):
            assert signed.count(name) == 2, (name, signed)  # present once, listed twice
        for name in ("cc", "reply-to", "in-reply-to", "references"):
            assert signed.count(name) == 1, (name, signed)  # absent, listed once: none may be added


@pytest.mark.parametrize("line", ADDED, ids=["reply-to", "cc", "second-subject", "in-reply-to"])
@pytest.mark.parametrize("at_top", [False, True], ids=["end-of-header", "top"])
def test_adding_a_field_breaks_the_signature(out, delivered, line: str, at_top: bool) -> None:  # noqa: F811
    tampered = _with_field(delivered, line, at_top=at_top)
    verdict = independent_dkim_check(tampered, out.remote.dns_port)
    assert verdict["result"] == "fail", verdict
    assert SENDER.split("@")[1] == verdict["signatures"][0]["d"]


def test_the_signature_expires_a_week_after_it_was_made(out, delivered) -> None:  # noqa: F811
    for tags in _tags(delivered):
        assert "t" in tags and "x" in tags, tags
        assert int(tags["x"]) - int(tags["t"]) == WEEK
    assert independent_dkim_check(delivered, out.remote.dns_port)["result"] == "pass"
