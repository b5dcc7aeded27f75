"""Header injection: compose refuses it at the input, whatever the interpreter's `email` package
does (CVE-2024-6923 is fixed in some Pythons and not in others), and, as the last line of defence,
a built message must carry exactly the fields we set."""
from __future__ import annotations

import datetime as dt
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from appliance.errors import ValidationError
from appliance.models import Inbox
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


def request(**fields) -> compose.SendRequest:
    fields.setdefault("to", [compose.Recipient("x@y.example")])
    return compose.SendRequest(text_body="x", **fields)


@pytest.mark.parametrize(("where", "fields"), [
    ("subject", {"subject": CVE_WORD + " and more words" * 6}),
    ("to[0].name", {"to": [compose.Recipient("x@y.example", name=CVE_WORD)]}),
    ("cc[0].name", {"cc": [compose.Recipient("c@y.example", name="=?UTF-8?B?aGkNCkJjYzogeEB5LnRlc3Q=?=")]}),
    ("reply_to[0].name", {"reply_to": [compose.Recipient("r@y.example", name="a\r\nBcc: victim@x.test")]}),
])
def test_compose_refuses_the_cve_2024_6923_injection_before_building(where: str, fields: dict) -> None:
    # Refused from the input alone: nothing is built, so the interpreter's email package never sees it.
    inbox = Inbox(address="agent@a.example", display_name="Agent")
    with pytest.raises(ValidationError) as refused:
        compose.compose(None, None, inbox, request(**fields), None, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    assert refused.value.field == where


@pytest.mark.parametrize("injected", [
    b"Subject: hi\r\nBcc: victim@x.test\r\n",  # what a vulnerable package emits: a line of its own
    b"Subject: hi\nBcc: victim@x.test\r\n",  # ...or split by a bare LF
    b"Subject: hi\rBcc: victim@x.test\r\n",  # ...or a bare CR
])
def test_a_message_as_a_vulnerable_interpreter_would_build_it_is_refused(injected: bytes) -> None:
    # The bytes are written here, not produced by this interpreter: the check is tested, not Python.
    raw = built(subject="hi").replace(b"Subject: hi\r\n", injected)
    assert injected in raw
    with pytest.raises(ValidationError):
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
