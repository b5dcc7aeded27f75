"""SMTP smuggling: a bare CR or LF never ends DATA or a command, and never yields a second message.

Each case sends, inside one DATA, a fake end of data followed by a whole second transaction;
a server that took the fake end for the real one would store a second, "smuggled" message.
"""
from __future__ import annotations

import pytest

from tests.integration.smtp_fixtures import RawClient, smtp_listener, stored, tls_files  # noqa: F401

FIRST = b"From: a@sender.example\r\nTo: agent@hosted.example\r\nSubject: first\r\n\r\nHello"
SMUGGLED = (b"MAIL FROM:<ceo@hosted.example>\r\nRCPT TO:<agent@hosted.example>\r\nDATA\r\n"
            b"From: ceo@hosted.example\r\nTo: agent@hosted.example\r\nSubject: smuggled\r\n\r\n"
            b"Wire the money.\r\n.\r\n")


def open_transaction(raw: RawClient) -> None:
    assert raw.reply()[0] == 220
    assert raw.command(b"EHLO client.example\r\n")[0] == 250
    assert raw.command(b"MAIL FROM:<a@sender.example>\r\n")[0] == 250
    assert raw.command(b"RCPT TO:<agent@hosted.example>\r\n")[0] == 250
    assert raw.command(b"DATA\r\n")[0] == 354


def replies_until_closed(raw: RawClient) -> list[str]:
    replies = []
    while True:
        code, text = raw.reply()
        if code == 0:
            return replies
        replies.append(text)


@pytest.fixture
def hosted(world, store, smtp_listener) -> tuple[str, int]:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    return smtp_listener()


def test_the_control_case_a_real_end_of_data_gives_two_messages(hosted, store) -> None:
    """The payload is a working smuggling payload: with a real CRLF.CRLF it makes two messages."""
    with RawClient(hosted) as raw:
        open_transaction(raw)
        raw.send(FIRST + b"\r\n.\r\n" + SMUGGLED + b"QUIT\r\n")
        replies = replies_until_closed(raw)
    assert [r[:3] for r in replies] == ["250", "250", "250", "354", "250", "221"], replies
    assert sorted(m.subject for m, _ in stored(store)) == ["first", "smuggled"]


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r",
                                      b"\n.\n\r\n", b"\n..\n", b"\r\n.\r\r\n"])
def test_a_fake_end_of_data_is_content_and_the_message_is_refused(hosted, store, fake_end: bytes) -> None:
    with RawClient(hosted) as raw:
        open_transaction(raw)
        raw.send(FIRST + fake_end + SMUGGLED + b"QUIT\r\n")
        replies = replies_until_closed(raw)
    # One answer for the one DATA, then QUIT's: no second transaction was seen.
    assert len(replies) == 2, replies
    assert replies[1].startswith("221"), replies
    if b"\r" in fake_end.replace(b"\r\n", b""):  # a bare CR: the message is refused
        assert replies[0].startswith("550 5.6.0") and "bare CR or LF" in replies[0], replies
        assert stored(store) == []
        return
    # Only bare LFs (smtp_bare_newline = normal): they end lines, never DATA; one message is stored,
    # the would-be second transaction inside it as text, every line ending in CRLF.
    assert replies[0].startswith("250"), replies
    [(message, raw_bytes)] = stored(store)
    assert message.subject == "first" and b"Wire the money." in raw_bytes
    assert raw_bytes.count(b"\n") == raw_bytes.count(b"\r\n")


def test_the_session_goes_on_after_a_refused_message(hosted, store) -> None:
    with RawClient(hosted) as raw:
        open_transaction(raw)
        assert raw.command(FIRST + b"\r.\r" + SMUGGLED)[0] == 550
        assert raw.command(b"MAIL FROM:<a@sender.example>\r\n")[0] == 250
        assert raw.command(b"RCPT TO:<agent@hosted.example>\r\n")[0] == 250
        assert raw.command(b"DATA\r\n")[0] == 354
        assert raw.command(b"Subject: clean\r\n\r\nfine\r\n.\r\n")[0] == 250
    assert [m.subject for m, _ in stored(store)] == ["clean"]


def _send_best_effort(raw: RawClient, data: bytes) -> None:
    try:
        raw.send(data)
    except OSError:  # the server may already have closed
        pass


@pytest.mark.parametrize(("before", "bad_line"), [
    ([], b"EHLO client.example\n"),
    ([b"EHLO client.example\r\n"], b"MAIL FROM:<a@sender.example>\n"),
    ([b"EHLO client.example\r\n", b"MAIL FROM:<a@sender.example>\r\n"], b"RCPT TO:<agent@hosted.example>\n"),
    ([b"EHLO client.example\r\n", b"MAIL FROM:<a@sender.example>\r\n", b"RCPT TO:<agent@hosted.example>\r\n"],
     b"DATA\n"),
    ([b"EHLO client.example\r\n"], b"MAIL FROM:<a@sender.example>\rRCPT TO:<agent@hosted.example>\r\n"),
    ([b"EHLO client.example\r\n"], b"MAIL FROM:<a@sender.example>\r\r\n"),
    ([b"EHLO client.example\r\n"], b"NOOP\n\r\n"),
])
def test_a_command_line_with_a_bare_cr_or_lf_is_refused_and_the_connection_closed(
        hosted, store, before: list[bytes], bad_line: bytes) -> None:
    with RawClient(hosted) as raw:
        assert raw.reply()[0] == 220
        for line in before:
            assert raw.command(line)[0] == 250
        raw.send(bad_line)
        # What a smuggling client would send next: a message and a second transaction.
        _send_best_effort(raw, b"Subject: first\r\n\r\nHello\r\n.\r\n" + SMUGGLED)
        replies = replies_until_closed(raw)
    assert replies and replies[0].startswith("500 5.5.2 Bare CR or LF"), replies
    assert len(replies) == 1, replies  # nothing after it was read as a command
    assert stored(store) == []


def test_a_whole_transaction_in_bare_lf_stores_nothing(hosted, store) -> None:
    with RawClient(hosted) as raw:
        assert raw.reply()[0] == 220
        _send_best_effort(raw, b"EHLO client.example\nMAIL FROM:<a@sender.example>\n"
                               b"RCPT TO:<agent@hosted.example>\nDATA\nSubject: lf\n\nbody\n.\nQUIT\n")
        replies = replies_until_closed(raw)
    assert len(replies) == 1 and replies[0].startswith("500 5.5.2"), replies
    assert stored(store) == []
