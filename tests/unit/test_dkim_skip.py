"""verify_dkim leaves dkimpy out when a message cannot hold a DKIM-Signature, and its answer is
the same as dkimpy's would have been: ("none", ()) for unsigned mail, parsable or not."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance.config import Settings
from appliance.dns import Resolver
from appliance.services.mail import mailauth
from appliance.services.mail.mailauth import verify_dkim

# Nothing listens on the discard port: a key lookup fails at once (temperror), never hangs.
RESOLVER = Resolver(Settings(dns_servers="127.0.0.1:9", dns_timeout=0.5))
BODY = b"".join(b"line %d of a longer body\r\n" % n for n in range(5000))  # 140 KiB

UNSIGNED = [
    b"From: a@example.test\r\nSubject: plain\r\n\r\nHello.\r\n",
    b"From: a@example.test\r\nSubject: big\r\n\r\n" + BODY,
    b"From: a@example.test\r\n",  # no body, no empty line
    b"\r\nFrom: a@example.test\r\n\r\nthe header section is empty\r\n",
    b"From: a@example.test\r\nnot a header line\r\n\r\nbody\r\n",  # dkimpy cannot parse it
    b"From: a@example.test\r\n X-Folded: dkim\r\n\r\nbody\r\n",
]
# Where dkimpy is asked: the name in the header section in any case, or in the first 64 KiB of
# a message dkimpy cannot parse (permerror), or after 64 KiB of headers.
CONSULTED = [
    b"From: a@example.test\r\nDKIM-Signature: v=1; d=example.test; s=sel; b=AAAA\r\n\r\nbody\r\n",
    b"From: a@example.test\r\ndKiM-sIgNaTuRe: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=sel;\r\n"
    b"\th=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n\r\nbody\r\n",
    b"From: a@example.test\r\nbad header line\r\n\r\nDKIM-Signature: in the body\r\n",
    b"From: a@example.test\r\nX-Long: " + b"x" * 70_000 + b"\r\nDKIM-Signature: v=1; d=example.test\r\n\r\nb\r\n",
    b"From: a@example.test\r\n\r\nthe body only says DKIM-Signature: x\r\n",
]


@pytest.mark.parametrize("raw", UNSIGNED)
def test_unsigned_mail_is_none_without_dkimpy_and_dkimpy_agrees(raw):
    assert not mailauth._may_hold_signature(raw)
    assert verify_dkim(raw, RESOLVER) == ("none", ()) == mailauth._verify_signatures(raw, RESOLVER)


@pytest.mark.parametrize("raw", CONSULTED)
def test_mail_that_may_hold_a_signature_is_given_to_dkimpy(raw):
    assert mailauth._may_hold_signature(raw)
    assert verify_dkim(raw, RESOLVER) == mailauth._verify_signatures(raw, RESOLVER)


def test_a_signature_header_in_any_case_is_verified_not_skipped():
    result, signatures = verify_dkim(CONSULTED[1], RESOLVER)
    assert result == "temperror" and [s.domain for s in signatures] == ["example.test"]
    assert verify_dkim(CONSULTED[2], RESOLVER) == ("permerror", ())  # unparsable, names a signature


lines = st.one_of(
    st.sampled_from([b"From: a@example.test", b"DKIM-Signature: v=1; d=example.test; s=s", b"dkim-signature:",
                     b"X-Note: dkim-signature", b" folded", b"", b"not a header", b"From x"]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=12))
def test_skipping_never_changes_the_answer(message_lines):
    raw = b"\r\n".join(message_lines) + b"\r\n"
    assert verify_dkim(raw, RESOLVER) == mailauth._verify_signatures(raw, RESOLVER)
