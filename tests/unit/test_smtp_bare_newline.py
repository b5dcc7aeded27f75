"""The DATA reader with smtp_bare_newline = normal (smtp/server.py normalize_bare_lf): a bare LF
ends a line as CRLF does (Postfix 3.9's smtpd_forbid_bare_newline = normalize), only CRLF.CRLF
ends DATA, and the limits count the lines as they are stored."""
from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP

from smtp.server import _StrictLineReader, normalize_bare_lf
from tests.unit.test_smtp_data_reader import aiosmtpd_reads, listener_reads

LIMIT = SMTP.line_length_limit


def normal_reads(stream: bytes, size_limit: int | None = None):
    """(content or the refusal's code, what stays unread) with normalize on, the stream in one piece."""
    async def run():
        reader = _StrictLineReader(limit=LIMIT)
        reader.feed_data(stream)
        reader.feed_eof()
        content, refusal = await reader.read_data(size_limit, LIMIT, normalize=True)
        return (content if content is not None else refusal[:3]), bytes(reader._buffer)
    return asyncio.run(run())


@pytest.mark.parametrize(("data", "expected"), [
    (b"\r\nplain\r\n", b"\r\nplain\r\n"),
    (b"\r\na\nb\n", b"\r\na\r\nb\r\n"),
    (b"\r\nHello\n.\nrest\r\n", b"\r\nHello\r\nrest\r\n"),  # LF.LF: the dot is dropped
    (b"\r\nHello\n.\r\nrest\r\n", b"\r\nHello\r\nrest\r\n"),  # LF.CRLF
    (b"\r\nHello\r\n.\nrest\r\n", b"\r\nHello\r\nrest\r\n"),  # CRLF.LF
    (b"\r\n.\n.\r\nz\r\n", b"\r\nz\r\n"),  # the second dot follows a line ending in a bare LF
    (b"\r\na\n..\nb\r\n", b"\r\na\r\n..\r\nb\r\n"),  # dot-stuffed: kept, unstuffed later
    (b"\r\nx\r\r\n", b"\r\nx\r\r\n"),  # a bare CR is left for the handler to refuse
    (b"\r\ncut\nshort", b"\r\ncut\r\nshort"),  # a head cut short keeps its partial line
])
def test_bare_lf_becomes_crlf_and_a_lone_dot_beside_one_is_dropped(data: bytes, expected: bytes) -> None:
    assert normalize_bare_lf(data) == expected


def test_only_crlf_dot_crlf_ends_data_and_what_follows_stays_unread() -> None:
    stream = b"a\n.\nb\n.\r\nc\r\n..d\ne\r\n.\r\nQUIT\r\n"
    assert normal_reads(stream) == (b"a\r\nb\r\nc\r\n.d\r\ne\r\n", b"QUIT\r\n")


def test_lines_are_counted_as_stored_so_many_short_lf_lines_fit_the_line_limit() -> None:
    body = b"".join(b"line %d\n" % n for n in range(500))  # 4 KB between two CRLFs
    assert normal_reads(body + b"\r\n.\r\n")[0] == body.replace(b"\n", b"\r\n") + b"\r\n"
    assert normal_reads(b"x" * 1000 + b"\n\r\n.\r\n")[0] == "500"  # one line too long all the same


def test_the_size_limit_counts_the_crlf_each_bare_lf_becomes() -> None:
    stream = b"abcdefgh\n" * 10 + b"\r\n.\r\n"  # 92 bytes of content as sent, 102 as stored
    assert normal_reads(stream, size_limit=95)[0] == "552"
    assert normal_reads(stream, size_limit=105)[0] == b"abcdefgh\r\n" * 10 + b"\r\n"


def test_without_a_bare_lf_the_reader_takes_what_aiosmtpd_takes() -> None:
    stream = b"one\r\n..two\r\nthree\r\n.\r\nQUIT\r\n"
    assert normal_reads(stream) == asyncio.run(aiosmtpd_reads([stream], None)) == \
        asyncio.run(listener_reads([stream], None))
