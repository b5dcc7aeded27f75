"""parse_message on a corpus of malformed and hostile messages, and on hypothesis-generated ones:
it never raises, answers in bounded time, and keeps what it can (subject, text, attachments with
safe names), noting a parse error where the message is broken."""
from __future__ import annotations

import re
import time
import tracemalloc
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.services.mail.mime import MAX_ATTACHMENTS, ParsedMessage, parse_message
from tests.mime_corpus import Case, build, messages

CORPUS = build()
BY_NAME = {case.name: case for case in CORPUS}


def assert_storable(parsed: ParsedMessage) -> None:
    """Every string the store keeps is valid UTF-8 without NUL (PostgreSQL text holds neither
    surrogates nor NUL), every header field is one line, every attachment name is safe."""
    assert isinstance(parsed, ParsedMessage)
    strings = [parsed.subject, parsed.message_id, parsed.in_reply_to, parsed.date, parsed.from_email,
               parsed.from_name, parsed.text, parsed.html, parsed.snippet, *parsed.references]
    for group in (parsed.to, parsed.cc, parsed.reply_to):
        for address in group:
            strings += [address["email"], address["name"]]
            assert "@" in address["email"]
    for attachment in parsed.attachments:
        strings += [attachment.filename, attachment.content_type, attachment.content_id]
        assert isinstance(attachment.content, bytes)
        assert attachment.disposition in ("attachment", "inline")
        assert_safe_filename(attachment.filename)
    for value in strings:
        assert isinstance(value, str)
        value.encode("utf-8")  # raises on lone surrogates (undecodable bytes smuggled through)
        assert "\x00" not in value
    for value in (parsed.subject, parsed.message_id, parsed.in_reply_to, parsed.date, parsed.from_email,
                  parsed.from_name, *parsed.references):
        assert not any(unicodedata.category(c) == "Cc" for c in value), repr(value)
        assert len(value) <= 998
    assert len(parsed.attachments) <= MAX_ATTACHMENTS
    assert "<script" not in parsed.html.lower()
    if parsed.parse_error is not None:
        assert isinstance(parsed.parse_error, str) and parsed.parse_error and len(parsed.parse_error) <= 500


def assert_safe_filename(name: str) -> None:
    assert name and len(name) <= 255, name
    assert "/" not in name and "\\" not in name, name
    assert name not in (".", "..") and not name.startswith("."), name
    assert not re.search(r'[<>:"|?*]', name), name
    assert not any(unicodedata.category(c) == "Cc" for c in name), repr(name)


def parse_timed(raw: bytes, budget: float = 5.0) -> ParsedMessage:
    started = time.perf_counter()
    parsed = parse_message(raw)
    elapsed = time.perf_counter() - started
    assert elapsed < budget, f"parsing took {elapsed:.1f}s"
    return parsed


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_each_corpus_message_parses_without_raising_and_keeps_what_it_can(case: Case) -> None:
    parsed = parse_timed(case.raw)
    assert_storable(parsed)
    if case.subject is not None:
        assert parsed.subject == case.subject
    if case.text_contains is not None:
        assert case.text_contains in parsed.text, parsed.text[:300]
    names = [a.filename for a in parsed.attachments]
    for name in case.attachment_names:
        assert name in names, names
    if case.parse_error is True:
        assert parsed.parse_error, "a broken message must note its parse error"
    elif case.parse_error is False:
        assert parsed.parse_error is None, parsed.parse_error
    if "attachment" in case.extra:  # kept exactly as sent, never unpacked
        (attachment,) = [a for a in parsed.attachments if a.filename == case.attachment_names[0]]
        assert attachment.content == case.extra["attachment"]


def test_a_multipart_without_its_boundary_keeps_the_body_somewhere() -> None:
    parsed = parse_message(BY_NAME["missing-boundary"].raw)
    kept = parsed.text + "".join(a.content.decode("latin-1") for a in parsed.attachments)
    assert "This body has no parts at all." in kept
    assert "MultipartInvariantViolationDefect" in parsed.parse_error or "Boundary" in parsed.parse_error


def test_the_zip_bomb_is_stored_as_its_few_compressed_bytes_and_never_inflated() -> None:
    case = BY_NAME["zip-bomb"]
    tracemalloc.start()
    try:
        parsed = parse_message(case.raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (bomb,) = parsed.attachments
    assert bomb.content_type == "application/zip" and bomb.filename == "bomb.zip"
    assert len(bomb.content) < 200_000  # inflated it would be 64 MiB
    assert peak < 20 * 1024 * 1024, f"parsing peaked at {peak} bytes"


def test_hostile_attachment_names_are_made_safe() -> None:
    parsed = parse_message(BY_NAME["hostile-filenames"].raw)
    names = [a.filename for a in parsed.attachments]
    assert names[:2] == ["passwd", "evil.exe"]
    assert names[2].endswith(".txt") or len(names[2]) == 255
    assert len(names) == 4 and names[3].startswith("attachment-")
    parsed = parse_message(BY_NAME["rfc2047-garbage"].raw)
    for attachment in parsed.attachments:
        assert "etc" not in attachment.filename.replace("etc_", "") or "/" not in attachment.filename


def test_8bit_and_encoded_word_garbage_in_headers_decodes_to_clean_text() -> None:
    parsed = parse_message(BY_NAME["8bit-headers"].raw)
    assert parsed.subject.startswith("caf") and "na" in parsed.subject and "été" in parsed.subject
    assert parsed.from_email == "jerome@sender.example"
    parsed = parse_message(BY_NAME["rfc2047-garbage"].raw)
    assert "café" in parsed.subject
    assert [a["email"] for a in parsed.to] == ["agent@acme.example"]


def test_nul_bytes_are_dropped_from_text_but_kept_in_attachment_content() -> None:
    parsed = parse_message(BY_NAME["nul-bytes"].raw)
    assert parsed.subject == "has nul"
    assert parsed.text.startswith("beforeafter")
    (attachment,) = parsed.attachments
    assert attachment.content == b"\x00\x00\x00" and "\x00" not in attachment.filename


def test_a_utf7_script_is_sanitised_out_of_the_html() -> None:
    parsed = parse_message(BY_NAME["charset-utf7-html"].raw)
    assert "alert" not in parsed.html and "<script" not in parsed.html
    assert "visible words" in parsed.html


def test_parts_past_the_limit_are_not_read_and_the_cut_is_noted() -> None:
    parsed = parse_timed(BY_NAME["3000-parts"].raw, budget=5.0)
    assert len(parsed.attachments) == MAX_ATTACHMENTS
    assert [a.filename for a in parsed.attachments[:3]] == ["f0.bin", "f1.bin", "f2.bin"]
    assert parsed.parse_error and "parts" in parsed.parse_error


@pytest.mark.parametrize("depth", [200, 1_000, 5_000])
def test_deep_nesting_never_raises_and_stays_bounded(depth: int) -> None:
    inner = b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in reversed(range(depth)):
        inner = (b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (level, level)
                 + inner + b"--n%d--\r\n" % level)
    raw = b"Subject: nested\r\nMIME-Version: 1.0\r\n" + inner
    parsed = parse_timed(raw, budget=20.0)
    assert_storable(parsed)
    assert parsed.subject == "nested"  # the headers are read however deep the body nests
    if depth <= 200:
        assert parsed.parse_error is None and "deep inside" in parsed.text
    else:  # too deep to parse: noted, and the caller stores the raw bytes anyway
        assert parsed.parse_error == "the message nests too deeply to parse"


def test_deep_nesting_parses_the_same_in_a_worker_thread() -> None:
    """The listener parses in a worker thread, whose stack is not the main thread's."""
    from concurrent.futures import ThreadPoolExecutor
    inner = b"Content-Type: text/plain\r\n\r\nx\r\n"
    for level in reversed(range(3_000)):
        inner = (b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (level, level)
                 + inner + b"--n%d--\r\n" % level)
    with ThreadPoolExecutor(1) as pool:
        parsed = pool.submit(parse_message, b"Subject: deep\r\n" + inner).result(timeout=60)
    assert_storable(parsed)
    assert parsed.subject == "deep" and parsed.parse_error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages())
def test_generated_messages_never_raise_and_give_storable_fields(raw: bytes) -> None:
    parsed = parse_timed(raw, budget=5.0)
    assert_storable(parsed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_storable(parse_timed(raw, budget=5.0))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["missing-boundary", "broken-base64", "8bit-headers", "rfc2047-garbage",
                                 "nul-bytes", "invalid-charset", "qp-garbage", "bad-rfc822",
                                 "unterminated-multipart"]), min_size=1, max_size=4),
       st.integers(0, 10_000), st.binary(max_size=20))
def test_corpus_messages_cut_and_spliced_never_raise(names: list[str], cut: int, junk: bytes) -> None:
    raw = b"".join(BY_NAME[name].raw for name in names)
    raw = raw[:cut] + junk + raw[cut:]
    assert_storable(parse_timed(raw, budget=5.0))
