"""parse_message reads a single-part message without running its body through the email
parser (mime._single_part): the result must be exactly what the full parser gives, for every
message of the malformed corpus and for generated ones, single-part or not."""
from __future__ import annotations

from dataclasses import asdict
from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.services.mail import mime
from tests.mime_corpus import build, messages


def parsed_in_full(raw: bytes) -> mime.ParsedMessage:
    original = mime._single_part
    mime._single_part = lambda _raw: None
    try:
        return mime.parse_message(raw)
    finally:
        mime._single_part = original


def single_part_messages() -> list[bytes]:
    head = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@example.com, b@example.com\r\n"
            b"Subject: =?utf-8?b?w5xiZXIgYWxsZXM=?=\r\nMessage-ID: <x@example.org>\r\n")
    return [
        head + b"\r\n" + b"plain text\r\n" * 2000,
        head + b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n",
        head + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               b"caf=C3=A9 =\r\nsoft break\r\n",
        head + b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"PHA+SGVsbG8gPGI+d29ybGQ8L2I+PHNjcmlwdD54PC9zY3JpcHQ+PC9wPg==\r\n",
        head + b"Content-Type: application/pdf; name=report.pdf\r\nContent-Disposition: attachment\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
        head + b"Content-Type: text/plain; charset=bogus-charset\r\n\r\n\xff\xfe odd bytes\r\n",
        head + b"a line that is no header\r\nX-After: 1\r\n\r\nbody\r\n",  # the header block ends early
        b"\r\n\r\nno headers at all\r\n",
        head + b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
        head + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
        head + b"Content-Type: multipart/mixed\r\n\r\nno boundary given\r\n",
    ]


def assert_same(raw: bytes) -> None:
    assert asdict(mime.parse_message(raw)) == asdict(parsed_in_full(raw))


@pytest.mark.parametrize("raw", single_part_messages() + [case.raw for case in build()])
def test_the_fast_path_reads_exactly_what_the_parser_reads(raw: bytes) -> None:
    assert_same(raw)


def test_the_fast_path_is_taken_for_a_single_part_only() -> None:
    plain, latin1, qp, html, pdf, bogus, cut_short, headless, rfc822, multipart, no_boundary = single_part_messages()
    for raw in (plain, latin1, qp, html, pdf, bogus):
        assert mime._single_part(raw) is not None
    assert mime._single_part(plain).get_payload() == BytesParser(policy=policy.default).parsebytes(plain).get_payload()
    for raw in (cut_short, headless, rfc822, multipart, no_boundary):  # the full parser reads these
        assert mime._single_part(raw) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_generated_messages_read_the_same_either_way(raw: bytes) -> None:
    assert_same(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=2000))
def test_arbitrary_bytes_read_the_same_either_way(head: bytes, body: bytes) -> None:
    assert_same(head + b"\r\n\r\n" + body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "bc", " ", "\n", "\t", "\r\n", "\u00e9", "\u2003", "word ", "  " * 300]),
                max_size=1500).map("".join))
def test_the_snippet_is_the_start_of_the_collapsed_text(text: str) -> None:
    assert mime.ParsedMessage(text=text).snippet == " ".join(text.split())[:mime.SNIPPET_LENGTH]
