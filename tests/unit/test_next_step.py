"""Issue 21 point 4: the next step without a model. Quoted text and signatures are cut off before
anything is read; invoices ask to pay (receipts do not); meetings and deadlines with a date are
scheduled, with `due` read by the calendar's time parser in the inbox's zone; questions ask for a
reply (not in automated mail); bulk mail with List-Unsubscribe offers to unsubscribe."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance.services.intelligence import nextstep
from appliance.services.intelligence.mailparts import read_mail

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone.utc)  # a Monday


def mail(body: str, subject: str = "Hello", headers: str = "", attachment: str = "") -> bytes:
    if attachment:
        return (f"From: a@b.example\r\nSubject: {subject}\r\n{headers}MIME-Version: 1.0\r\n"
                f"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
                f"--XX\r\n{attachment}\r\n--XX--\r\n").encode()
    return f"From: a@b.example\r\nSubject: {subject}\r\n{headers}Content-Type: text/plain\r\n\r\n{body}\r\n".encode()


def step(raw: bytes, **kw) -> dict:
    return nextstep.next_step(read_mail(raw), now=NOW, zone=kw.pop("zone", "Europe/Berlin"), **kw)


def test_quotes_and_signatures_are_not_read() -> None:
    text = ("Thanks, all done.\n\nBest regards,\nSam\nCould you call me?\n\n"
            "On Mon, 7 Dec 2026, Ann wrote:\n> Can you send the invoice by Friday?\n")
    assert nextstep.own_text(text) == "Thanks, all done."
    assert step(mail(text.replace("\n", "\r\n")))["action"] == "none"
    forwarded = "FYI.\n-----Original Message-----\nFrom: x\nPlease pay invoice 7 by Friday.\n"
    assert nextstep.own_text(forwarded) == "FYI."


@pytest.mark.parametrize(("body", "action"), [
    ("Please find invoice 2231 attached. Amount due: EUR 300, payment due by December 20, 2026.", "pay"),
    ("Thank you for your payment. Receipt 2231: EUR 300 was received.", "none"),
    ("Can we meet on Thursday at 3pm to go through the plan?", "schedule"),
    ("Could you send me the slides from the workshop?", "reply"),
    ("Here are this week's articles.", "none"),
])
def test_the_action(body: str, action: str) -> None:
    assert step(mail(body))["action"] == action


def test_due_is_read_in_the_inbox_zone() -> None:
    found = step(mail("Can we meet on Thursday at 3pm to go through the plan?"))
    assert found["due"] == "2026-12-10T14:00:00+00:00"  # 15:00 in Berlin
    assert found["summary"] == "Can we meet on Thursday at 3pm to go through the plan?"
    assert step(mail("Invoice 7, payment due by December 20, 2026."), zone="UTC")["due"] == \
        "2026-12-20T00:00:00+00:00"


def test_bulk_mail_offers_unsubscribe_and_automated_mail_asks_no_reply() -> None:
    headers = "List-Unsubscribe: <https://news.example/u>\r\nList-Id: <news.example>\r\n"
    assert step(mail("Do you like our new look?", headers=headers), automated=True)["action"] == "unsubscribe"
    assert step(mail("Shall we keep you posted?"), automated=True)["action"] == "none"


def test_phishing_is_only_reviewed_and_attachments_are_reviewed() -> None:
    assert step(mail("Please pay the invoice today."), verdict="phishing")["action"] == "review"
    raw = mail("See the file.", attachment='Content-Type: application/pdf; name="a.pdf"\r\n'
                                           'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0=')
    assert step(raw) == {"action": "review", "summary": "Attachments to look at: a.pdf", "due": None}


def test_dates_the_parser_finds() -> None:
    found = nextstep.find_dates("tomorrow 10am, 3 March at 3pm, 2026-12-24T10:00, Feb 30, the marketing 5 plan",
                                now=NOW, zone="UTC")
    assert [at.isoformat() for _, at in found] == ["2026-12-08T10:00:00+00:00", "2027-03-03T15:00:00+00:00",
                                                   "2026-12-24T10:00:00+00:00"]
