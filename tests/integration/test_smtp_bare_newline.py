"""Bare LF in DATA content (issue 14, point 10): taken as Postfix 3.9's default takes it
(smtpd_forbid_bare_newline = normalize): it ends a line and is stored as CRLF, while only CRLF.CRLF
ends DATA; `smtp_bare_newline = strict` refuses it (550 5.6.0) as before. Over a raw socket,
because smtplib turns every LF into CRLF itself."""
from __future__ import annotations

import pytest

from tests.integration.smtp_fixtures import RawClient, smtp_listener, stored, tls_files  # noqa: F401
from tests.integration.test_smtp_smuggling import open_transaction, replies_until_closed

# What a script writing "\n" line ends sends: 200 short lines, some 6 KB, no CR anywhere but the end.
SCRIPT_BODY = b"".join(b"line %d of a report\n" % n for n in range(200))
SCRIPT_MESSAGE = b"From: cron@sender.example\nTo: agent@hosted.example\nSubject: nightly\n\n" + SCRIPT_BODY


@pytest.fixture
def hosted(world, store, settings, smtp_listener):  # noqa: F811
    """Start a listener for agent@hosted.example with smtp_bare_newline as given."""
    world.inbox(world.owner(), "agent@hosted.example")

    def start(mode: str = "normal") -> tuple[str, int]:
        return smtp_listener(settings=settings.model_copy(update={"smtp_bare_newline": mode}))

    return start


def _send(address: tuple[str, int], content: bytes) -> list[str]:
    with RawClient(address) as raw:
        open_transaction(raw)
        raw.send(content + b"QUIT\r\n")
        return replies_until_closed(raw)


def test_a_message_in_bare_lf_lines_is_accepted_and_stored_with_crlf(hosted, store) -> None:
    replies = _send(hosted(), SCRIPT_MESSAGE + b"\r\n.\r\n")
    assert [r[:3] for r in replies] == ["250", "221"], replies
    [(message, raw)] = stored(store)
    assert message.subject == "nightly"
    stored_copy = raw[raw.index(b"From: cron@"):]  # after our trace headers
    assert stored_copy == SCRIPT_MESSAGE.replace(b"\n", b"\r\n") + b"\r\n"
    assert "line 199 of a report" in message.text_body


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"])
def test_a_lone_dot_next_to_a_bare_lf_does_not_end_data(hosted, store, fake_end: bytes) -> None:
    content = (b"From: a@sender.example\r\nTo: agent@hosted.example\r\nSubject: dots\r\n\r\n"
               b"before" + fake_end + b"after\r\n..stuffed\nlast\r\n.\r\n")
    replies = _send(hosted(), content)
    # One reply for DATA, then QUIT's: "after" was not read as a command.
    assert [r[:3] for r in replies] == ["250", "221"], replies
    [(message, raw)] = stored(store)
    # The lone dot is dropped (as Postfix does); the dot-stuffed line after a bare LF is unstuffed.
    assert raw.endswith(b"\r\n\r\nbefore\r\nafter\r\n.stuffed\r\nlast\r\n"), raw[-60:]


def test_strict_refuses_bare_lf_as_before(hosted, store) -> None:
    replies = _send(hosted("strict"), b"Subject: lf\r\n\r\nfirst\nsecond\r\n.\r\n")
    assert len(replies) == 2 and replies[0].startswith("550 5.6.0"), replies
    assert stored(store) == []


def test_a_bare_cr_is_refused_in_either_mode(hosted, store) -> None:
    replies = _send(hosted(), b"Subject: cr\r\n\r\nold\rmac\r\n.\r\n")
    assert len(replies) == 2 and replies[0].startswith("550 5.6.0"), replies
    assert stored(store) == []
