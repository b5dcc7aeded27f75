"""The RFC 3834 rules of appliance/services/mail/autoreply.py, which the out-of-office and the
workflows share: who is never answered, and the once-per-window claim (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance.clock import utcnow
from appliance.models import Tenant
from appliance.services.identity.settings import llm_allowed
from appliance.services.mail import autoreply

HOST = "mail.gentbox.test"


def _headers(*lines: str):
    return autoreply.headers_of(("\r\n".join(["From: A <a@partner.example>", "Subject: hi", *lines]) +
                                 "\r\n\r\nbody\r\n").encode())


@pytest.mark.parametrize("lines, envelope, reason", [
    ((), "", "null sender"),
    ((), "<>", "null sender"),
    (("Auto-Submitted: auto-generated",), "a@partner.example", "Auto-Submitted: auto-generated"),
    (("Auto-Submitted: auto-replied; owner=x",), "a@partner.example", "Auto-Submitted: auto-replied"),
    (("Precedence: bulk",), "a@partner.example", "Precedence: bulk"),
    (("Precedence: List",), "a@partner.example", "Precedence: list"),
    (("Precedence: junk",), "a@partner.example", "Precedence: junk"),
    (("List-Id: <team.partner.example>",), "a@partner.example", "List-Id present"),
    (("List-Unsubscribe: <mailto:u@partner.example>",), "a@partner.example", "List-Unsubscribe present"),
    (("X-Auto-Response-Suppress: DR, OOF",), "a@partner.example", "X-Auto-Response-Suppress"),
    ((), "MAILER-DAEMON@partner.example", "a mail robot"),
    ((), "owner-team@partner.example", "a mail robot"),
    ((), "team-request@partner.example", "a mail robot"),
    ((), f"no-reply@{HOST}", "a mail robot"),
    ((), f"alerts@{HOST}", "the appliance's own address"),
])
def test_never_answered(store, lines, envelope, reason) -> None:
    with store.session() as db:
        assert autoreply.why_not(db, _headers(*lines), envelope, hostname=HOST) == reason
        assert not autoreply.should_auto_reply(db, _headers(*lines), envelope, hostname=HOST)


def test_a_person_is_answered_and_an_inbox_here_is_not(store, world) -> None:
    inbox_id = world.inbox(world.owner(), "desk@hosted.test")
    with store.session() as db:
        assert autoreply.should_auto_reply(db, _headers("Auto-Submitted: no", "Precedence: first-class"),
                                           "Ann@Partner.example", hostname=HOST)
        assert autoreply.why_not(db, _headers(), "desk@hosted.test", hostname=HOST) == "the appliance's own address"
    assert inbox_id


def test_one_claim_per_sender_and_purpose_per_window(store, world) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@hosted.test")
    now = utcnow()

    def claim(sender: str, purpose: str, at: dt.datetime) -> bool:
        with store.session() as db:
            return autoreply.claim_window(db, tenant_id=owner.tenant_id, inbox_id=inbox_id, sender=sender,
                                          purpose=purpose, now=at)
    assert claim("ann@partner.example", "out_of_office", now)
    assert not claim("ANN@partner.example", "out_of_office", now + dt.timedelta(days=6, hours=23))
    assert claim("ann@partner.example", "wfl_x", now)  # another purpose has its own window
    assert claim("bob@partner.example", "out_of_office", now)
    assert claim("ann@partner.example", "out_of_office", now + autoreply.WINDOW)
    assert not claim("ann@partner.example", "out_of_office", now + autoreply.WINDOW + dt.timedelta(days=1))


def test_llm_consent_is_off_until_the_tenant_turns_it_on(store, world) -> None:
    owner = world.owner()
    with store.session() as db:
        tenant = db.get(Tenant, owner.tenant_id)
        assert llm_allowed(tenant) is False
        tenant.settings = {"llm_consent": True}
        assert llm_allowed(tenant) is True


@pytest.mark.parametrize("line", ["List-Unsubscribe: <https://esp.example/u/1>", "List-Post: <mailto:l@x.example>",
                                  "Auto-Submitted: auto-generated", "Precedence: bulk"])
def test_the_agenda_and_automatic_replies_share_one_rule_for_automated_mail(line):
    """A newsletter with only List-Unsubscribe is neither answered nor a missed reply (mime.py's
    automated_reason is the one rule both read)."""
    from appliance.services.mail import mime
    parsed = mime.parse_message((f"From: a@partner.example\r\nSubject: hi\r\n{line}\r\n\r\nbody\r\n").encode())
    assert parsed.automated is True
    assert mime.automated_reason(_headers(line)) is not None
