"""The last line of defence against header injection: whatever the `email` package emits (this
Python 3.11.7 still has CVE-2024-6923), a built message must carry exactly the fields we set."""
from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from appliance.errors import ValidationError
from appliance.services.mail import compose

CVE_WORD = "=?utf-8?q?hi=0ABcc:_victim@x.test?="
EXPECTED = ["From", "To", "Subject", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]


def built(subject: str = "Hello", name: str = "Agent") -> bytes:
    """A message built straight with the email package, skipping compose's input checks."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address(display_name=name, addr_spec="agent@a.example")
    msg["To"] = "x@y.example"
    msg["Subject"] = subject
    msg.set_content("x")
    return msg.as_bytes()


def test_a_clean_message_passes() -> None:
    compose._check_headers(built(), EXPECTED)


@pytest.mark.parametrize("where", ["subject", "name"])
def test_the_cve_2024_6923_encoded_word_cannot_leave_as_a_header(where: str) -> None:
    raw = built(subject=CVE_WORD + " and more words" * 6) if where == "subject" else built(name=CVE_WORD)
    assert b"\nBcc: victim@x.test" in raw  # this Python's email package does inject it...
    with pytest.raises(ValidationError):  # ...and the check refuses the message
        compose._check_headers(raw, EXPECTED)


def test_an_extra_header_on_its_own_crlf_line_is_refused() -> None:
    raw = built().replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nBcc: victim@x.test\r\n")
    with pytest.raises(ValidationError, match="header injection"):
        compose._check_headers(raw, EXPECTED)


@pytest.mark.parametrize("value", [CVE_WORD, "=?utf-8?q?a=0Db?=", "=?UTF-8?B?aGkNCkJjYzogeEB5LnRlc3Q=?=",
                                   "=?iso-8859-1?q?a=0A?=", "plain\r\ntext", "tab\tis fine\x85"])
def test_refuse_injection_decodes_encoded_words(value: str) -> None:
    if value == "tab\tis fine\x85":
        with pytest.raises(ValidationError):  # NEL is a line break too
            compose.refuse_injection(value, "subject")
        assert compose.refuse_injection("tab\tis fine", "subject") == "tab\tis fine"
        return
    with pytest.raises(ValidationError) as refused:
        compose.refuse_injection(value, "subject")
    assert refused.value.field == "subject"


def test_reply_subjects_are_not_doubled() -> None:
    assert compose.reply_subject("Plans") == "Re: Plans"
    assert compose.reply_subject("RE: Plans") == "RE: Plans"
    assert compose.reply_subject("re:Plans") == "re:Plans"
    assert compose.reply_subject("") == "Re:"
