"""The malformed-mail corpus (tests/mime_corpus.py) and hypothesis-generated messages through the
real listener, on both backends: each message is stored byte for byte under the Received header or
cleanly refused with a 5xx, the listener keeps answering, and its process's memory stays bounded."""
from __future__ import annotations

import ctypes
import gc
import re
import smtplib

from hypothesis import HealthCheck, given, settings as hypothesis_settings
from sqlalchemy import func, select

from appliance.models import Attachment, Message
from appliance.services.workspace import blobs
from tests.integration.smtp_fixtures import (message_bytes, smtp_listener, stored,  # noqa: F401
                                             tls_files)
from tests.mime_corpus import Case, build, messages

CORPUS = build()
RCPT = "agent@acme.example"
BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")
BARE_LF = re.compile(rb"(?<!\r)\n")
# One Received header (folded onto continuation lines), nothing else, then the bytes as sent.
TRACE = re.compile(rb"\AReceived: [^\r\n]*(?:\r\n\t[^\r\n]*)*\r\n\Z")
ROUNDS = 5  # the corpus is sent this many times (about 17 MB each) for the memory check
RSS_GROWTH_LIMIT = 150 * 1024 * 1024


def rss() -> int:
    """This process's resident set size in bytes (the listener runs in this process), after
    garbage collection and after glibc hands freed pages back (malloc_trim), so that what is
    measured is memory still held, not free space kept in the per-thread malloc arenas."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def send(address: tuple[str, int], raw: bytes) -> tuple[int, str]:
    """One transaction on a fresh connection; the DATA reply (code, text). A dropped connection or a
    refused envelope fails the test: the listener must answer every message."""
    with smtplib.SMTP(*address, local_hostname="client.example", timeout=60) as smtp:
        assert smtp.ehlo()[0] == 250
        assert smtp.mail("mallory@sender.example")[0] == 250
        assert smtp.rcpt(RCPT)[0] == 250
        try:
            code, reply = smtp.data(raw)
        except smtplib.SMTPDataError as exc:
            code, reply = exc.smtp_code, exc.smtp_error
        return code, reply.decode("utf-8", "replace")


def check_outcome(store, raw: bytes, code: int, reply: str, *, must_store: bool) -> object | None:
    """Stored byte for byte (250) or refused with a 5xx and nothing stored; the stored message."""
    if code != 250:
        assert not must_store, f"{code} {reply}"
        assert 500 <= code < 600, f"not a clean refusal: {code} {reply}"
        return None
    match = re.fullmatch(r"2\.0\.0 Ok: queued as (msg_\S+)", reply)
    assert match, reply
    ((message, stored_raw),) = stored(store, id=match.group(1))
    raw = BARE_LF.sub(b"\r\n", raw)  # smtp_bare_newline = normal: a bare LF is stored as CRLF
    assert stored_raw.endswith(raw) and TRACE.match(stored_raw[:len(stored_raw) - len(raw)]), stored_raw[:300]
    assert message.size == len(stored_raw)
    return message


def must_be_stored(case: Case) -> bool:
    return not case.smtp_rejectable and not BARE_LINE_ENDING.search(case.raw)


def test_the_corpus_is_stored_or_refused_the_listener_survives_and_memory_stays_bounded(
        world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, RCPT)
    address = smtp_listener(tls=False)
    assert all(case.raw.endswith(b"\r\n") for case in CORPUS)
    before = rss()
    outcomes: dict[str, int] = {}
    for round_ in range(ROUNDS):
        for case in CORPUS:
            code, reply = send(address, case.raw)
            if round_ == 0:
                message = check_outcome(store, case.raw, code, reply, must_store=must_be_stored(case))
                outcomes[case.name] = code
                if message is not None:
                    if case.subject is not None:
                        assert message.subject == case.subject
                    if case.text_contains is not None:
                        assert case.text_contains in message.text_body
                    if case.parse_error is True:
                        assert message.parse_error
                    with store.read_sessions() as db:
                        names = [a.filename for a in db.query(Attachment).filter_by(message_id=message.id)]
                    for name in case.attachment_names:
                        assert name in names
                    if "attachment" in case.extra:  # stored exactly as sent, never unpacked
                        with store.read_sessions() as db:
                            (content,) = [blobs.attachment_bytes(db, a) for a in db.query(Attachment).filter_by(
                                message_id=message.id, filename=case.attachment_names[0])]
                        assert content == case.extra["attachment"]
            else:  # the same answer every time
                assert code == outcomes[case.name], (case.name, code, reply)
        if round_ == 0:
            after_first = rss()
    after = rss()
    stored_count = sum(1 for code in outcomes.values() if code == 250)
    assert stored_count >= len(CORPUS) - 3, outcomes  # only the over-long lines may be refused
    with store.read_sessions() as db:
        assert db.scalar(select(func.count()).select_from(Message)) == stored_count * ROUNDS
    # Memory: one-time growth (malloc arenas, caches, the connection pool's buffers) and the
    # repeated rounds together stay under the bound.
    assert after - before < RSS_GROWTH_LIMIT, f"RSS grew {(after - before) >> 20} MiB"
    # No leak: once the pool's connections (each keeps buffers as large as its largest message)
    # are closed, the rounds after the first have added little; a leak of the raw bytes would
    # add ~17 MB a round. New connections are opened on demand, which the message below uses.
    store.dispose()
    after_dispose = rss()
    assert after_dispose - after_first < 40 * 1024 * 1024, \
        f"RSS grew {(after_dispose - after_first) >> 20} MiB after round 1"
    # The listener still answers: a normal message is stored.
    normal = message_bytes("After the corpus", RCPT, body="Still alive.")
    code, reply = send(address, normal)
    message = check_outcome(store, normal, code, reply, must_store=True)
    assert message.subject == "After the corpus" and message.text_body == "Still alive.\r\n"
    assert message.parse_error is None


@hypothesis_settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])
@given(raw=messages())
def test_generated_messages_are_stored_byte_for_byte_or_refused(world, store, smtp_listener, raw: bytes) -> None:
    if not stored(store) and not getattr(store, "_malformed_address", None):
        world.inbox(world.owner(), RCPT)
        store._malformed_address = smtp_listener(tls=False)
    address = store._malformed_address
    raw = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    code, reply = send(address, raw)
    check_outcome(store, raw, code, reply, must_store=False)
    normal = message_bytes("Alive", RCPT)
    code, reply = send(address, normal)
    check_outcome(store, normal, code, reply, must_store=True)
