"""The listener reads DATA a buffer at a time (smtp/server.py read_data): it must take exactly
what aiosmtpd 1.4.6's line-by-line smtp_DATA takes, refuse what it refuses with the same reply,
and leave whatever follows the end (a pipelined command) unread."""
from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings, strategies as st

from smtp.server import _StrictLineReader

LIMIT = SMTP.line_length_limit


async def _feed(reader: asyncio.StreamReader, chunks: list[bytes]) -> None:
    for chunk in chunks:  # a chunk at a time, as the network delivers it
        reader.feed_data(chunk)
        await asyncio.sleep(0)
    reader.feed_eof()


async def aiosmtpd_reads(chunks: list[bytes], size_limit: int | None):
    """aiosmtpd 1.4.6's smtp_DATA loop, with its replies: (content or reply code, unread bytes)."""
    reader = asyncio.StreamReader(limit=LIMIT)
    feeder = asyncio.ensure_future(_feed(reader, chunks))
    data: list[bytearray] = []
    num_bytes, fragments, state = 0, [], "nominal"
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            state = "500" if state == "nominal" else state
            data *= 0
            line = await reader.read(exc.consumed)
        except asyncio.IncompleteReadError:
            await feeder
            return "connection closed", b""
        if not fragments and line == b".\r\n":
            break
        num_bytes += len(line)
        if state == "nominal" and size_limit and num_bytes > size_limit:
            state, data = "552", []
        fragments.append(line)
        if line.endswith(b"\r\n"):
            if state == "nominal":
                whole = b"".join(fragments)
                if len(whole) > LIMIT:
                    state, data = "500", []
                else:
                    data.append(bytearray(whole))
            fragments = []
    await feeder
    rest = bytes(reader._buffer)
    if state != "nominal":
        return state, rest
    for text in data:
        if text.startswith(b"."):
            del text[0]
    return b"".join(data), rest


async def listener_reads(chunks: list[bytes], size_limit: int | None):
    reader = _StrictLineReader(limit=LIMIT)
    feeder = asyncio.ensure_future(_feed(reader, chunks))
    try:
        content, refusal = await reader.read_data(size_limit, LIMIT)
    except asyncio.IncompleteReadError:
        await feeder
        return "connection closed", b""
    await feeder
    return (content if content is not None else refusal[:3]), bytes(reader._buffer)


LINES = st.one_of(
    st.builds(lambda n: b"x" * n + b"\r\n", st.integers(0, 40)),
    st.builds(lambda n: b"." + b"y" * n + b"\r\n", st.integers(0, 4)),  # dot-stuffed lines
    st.builds(lambda n: b"z" * n + b"\r\n", st.sampled_from([997, 998, 999, 1000, 1001, 1002, 1003, 2500])),
    st.sampled_from([b"a\rb\r\n", b"a\nb\r\n", b"\n.\n", b"\r.\r", b".\r\n.", b"..\r\n", b"\r\n", b"\r"]),
)


@st.composite
def streams(draw) -> list[bytes]:
    body = b"".join(draw(st.lists(LINES, max_size=12)))
    after = draw(st.sampled_from([b"", b"MAIL FROM:<a@example.org>\r\n", b"QUIT\r\n"]))
    stream = body + (b".\r\n" + after if draw(st.booleans()) or not body else b"")
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=8))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if b > a]


@settings(max_examples=1500, deadline=None)
@given(chunks=streams(), size_limit=st.sampled_from([None, 40, 200, 1500, 100_000]))
def test_reading_a_buffer_at_a_time_takes_and_refuses_what_aiosmtpd_does(chunks, size_limit) -> None:
    expected = asyncio.run(aiosmtpd_reads(chunks, size_limit))
    assert asyncio.run(listener_reads(chunks, size_limit)) == expected


def test_a_large_message_in_one_buffer_and_in_many_small_ones() -> None:
    body = b"".join(b"." * (i % 2) + b"line %d\r\n" % i for i in range(20_000))
    stream = body + b".\r\nQUIT\r\n"
    expected = asyncio.run(aiosmtpd_reads([stream], None))
    assert expected[0] == body.replace(b"\r\n.", b"\r\n")
    assert asyncio.run(listener_reads([stream], None)) == expected
    assert asyncio.run(listener_reads([stream[i:i + 7] for i in range(0, len(stream), 7)], None)) == expected


def test_over_the_size_limit_the_data_is_read_to_its_end_and_refused_with_552() -> None:
    stream = b"abcdefgh\r\n" * 100_000 + b".\r\nQUIT\r\n"  # 1 MB against a 10 kB limit
    chunks = [stream[i:i + 65_536] for i in range(0, len(stream), 65_536)]
    assert asyncio.run(listener_reads(chunks, 10_000)) == ("552", b"QUIT\r\n")
