"""Mail to an internationalised domain (SMTPUTF8) reaches the inbox stored in punycode."""
from __future__ import annotations

from tests.integration.smtp_fixtures import client, smtp_listener, stored, tls_files  # noqa: F401


def test_a_unicode_domain_in_rcpt_finds_the_punycode_inbox(store, world, smtp_listener):  # noqa: F811
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@xn--bcher-kva.example")
    address = smtp_listener()
    raw = "From: a@example.org\r\nTo: agent@bücher.example\r\nSubject: idn\r\n\r\nHallo.\r\n".encode()
    with client(address) as smtp:
        refused = smtp.sendmail("a@example.org", ["agent@bücher.example"], raw, mail_options=["SMTPUTF8"])
    assert refused == {}
    assert [m.inbox_id for m, _raw in stored(store)] == [inbox_id]
