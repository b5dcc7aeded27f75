"""Inbound sender rules over real SMTP (issue 20.3): a blocked envelope sender gets 550 5.7.1 at
RCPT (smtplib and swaks), an allowlisted inbox refuses everyone else, and a header From the rules
refuse is 550 5.7.1 at DATA; nothing refused is stored."""
from __future__ import annotations

import smtplib
import subprocess

import pytest

from appliance.services.identity.auth import Principal
from appliance.services.mail import sender_rules
from tests.integration.smtp_fixtures import client, message_bytes, smtp_listener, stored, tls_files  # noqa: F401

REFUSED = b"5.7.1 The recipient does not accept mail from this sender"


def _rules(store, owner, inbox_id: str, **data) -> None:
    with store.session() as db:
        sender_rules.put_rules(db, Principal.system(owner.tenant_id, "test"), inbox_id, data)


def _rcpt(address, sender: str, recipient: str) -> tuple[int, bytes]:
    with client(address) as smtp:
        assert smtp.mail(sender)[0] == 250
        return smtp.rcpt(recipient)


def test_a_blocked_sender_gets_550_at_rcpt(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    other = world.inbox(owner, "desk@hosted.example")
    _rules(store, owner, inbox_id, inbound_mode="blocklist", inbound_patterns=["@spam.example", "*.junk.example",
                                                                                "eve@sender.example"])
    address = smtp_listener()
    for sender in ("x@spam.example", "y@a.junk.example", "Eve@Sender.example"):
        assert _rcpt(address, sender, "agent@hosted.example") == (550, REFUSED), sender
    assert _rcpt(address, "x@spam.example", "desk@hosted.example")[0] == 250  # another inbox's rules are its own
    assert _rcpt(address, "alice@sender.example", "agent@hosted.example")[0] == 250
    with client(address) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused):
        smtp.sendmail("x@spam.example", ["agent@hosted.example"], message_bytes("x", "agent@hosted.example"))
    assert stored(store, inbox_id=inbox_id) == [] and stored(store, inbox_id=other) == []


def test_swaks_from_a_blocked_sender_is_refused(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    _rules(store, owner, inbox_id, inbound_mode="blocklist", inbound_patterns=["@spam.example"])
    host, port = smtp_listener()
    result = subprocess.run(["swaks", "--server", host, "--port", str(port), "--helo", "client.example",
                             "--from", "boss@spam.example", "--to", "agent@hosted.example"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "<** 550 5.7.1 The recipient does not accept mail from this sender" in result.stdout, result.stdout
    assert stored(store, inbox_id=inbox_id) == []


def test_an_allowlisted_inbox_refuses_everyone_else(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    _rules(store, owner, inbox_id, inbound_mode="allowlist", inbound_patterns=["@partner.example"])
    address = smtp_listener()
    assert _rcpt(address, "alice@sender.example", "agent@hosted.example") == (550, REFUSED)
    assert _rcpt(address, "ann@sub.partner.example", "agent@hosted.example") == (550, REFUSED)
    with client(address) as smtp:
        smtp.sendmail("ann@partner.example", ["agent@hosted.example"],
                      message_bytes("Welcome", "agent@hosted.example", sender="ann@partner.example"))
    [(message, _)] = stored(store, inbox_id=inbox_id)
    assert message.subject == "Welcome"


def test_a_header_from_the_rules_refuse_is_550_at_data(world, store, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    open_inbox = world.inbox(owner, "desk@hosted.example")
    _rules(store, owner, inbox_id, inbound_mode="allowlist", inbound_patterns=["@partner.example"])
    address = smtp_listener()
    spoofed = message_bytes("Pay now", "agent@hosted.example", sender="ceo@attacker.example")
    with client(address) as smtp:
        assert smtp.mail("ann@partner.example")[0] == 250
        assert smtp.rcpt("agent@hosted.example")[0] == 250  # the envelope sender passes
        assert smtp.data(spoofed) == (550, REFUSED)  # the From does not
    assert stored(store, inbox_id=inbox_id) == []
    # With a second recipient that accepts it, only that one stores it.
    with client(address) as smtp:
        smtp.sendmail("ann@partner.example", ["agent@hosted.example", "desk@hosted.example"], spoofed)
    assert stored(store, inbox_id=inbox_id) == []
    assert [m.subject for m, _ in stored(store, inbox_id=open_inbox)] == ["Pay now"]
