"""Mail through the real listener is checked for SPF, DKIM and DMARC, and the agent sees it."""
from __future__ import annotations

import smtplib

import dkim
import pytest

from smtp.auth import make_authenticator
from tests.integration.smtp_fixtures import client, smtp_listener, tls_files  # noqa: F401
from tests.helpers import new_dkim_key

SENDER = "sender.test"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return new_dkim_key()


@pytest.fixture
def setup(dns_server, key, make_settings, make_store, world_for, make_app, smtp_listener):  # noqa: F811
    dns_server.publish(SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all", restart=False)
    dns_server.publish(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=reject", restart=False)
    dns_server.publish(f"sel._domainkey.{SENDER}", "TXT", key[1], restart=False)
    dns_server.restart()
    settings = make_settings(dns_servers=dns_server.address, dns_timeout=2.0)
    app = make_app(settings)
    store = app.extensions["gentbox"]
    world = world_for(app.test_client())
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@acme.example.com")
    agent = world.agent(owner, inbox_id, ["email:read"])
    address = smtp_listener(store=store, settings=settings, authenticate=make_authenticator(settings))
    return app.test_client(), agent, address


def _message(from_address: str, subject: str) -> bytes:
    return (f"From: <{from_address}>\r\nTo: agent@acme.example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@{from_address.split('@')[1]}>\r\n\r\nHello.\r\n").encode()


def _send(address, mail_from: str, raw: bytes) -> None:
    with client(address) as smtp:
        smtp.sendmail(mail_from, ["agent@acme.example.com"], raw)


def _received(api, agent, subject: str) -> dict:
    [summary] = [m for m in api.get("/v1/messages/", headers=agent.auth).json["results"] if m["subject"] == subject]
    return api.get(f"/v1/messages/{summary['message_id']}/", headers=agent.auth).json


def test_signed_aligned_mail_passes_and_a_spoof_is_refused(setup, key):
    api, agent, address = setup
    raw = _message(f"alice@{SENDER}", "genuine")
    signed = dkim.sign(raw, b"sel", SENDER.encode(), key[0], include_headers=[b"from", b"subject"]) + raw
    _send(address, f"alice@{SENDER}", signed)
    genuine = _received(api, agent, "genuine")
    assert genuine["authentication"] == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "dmarc_aligned": True}
    stored = api.get(f"/v1/messages/{genuine['message_id']}/raw/", headers=agent.auth).data
    assert stored.startswith(b"Authentication-Results: mail.gentbox.test;")
    assert stored.endswith(signed)

    # Claims to be from sender.test, but is neither signed by it nor sent from an address it allows:
    # sender.test publishes p=reject, so it is refused (quarantined instead with dmarc_reject_action,
    # its results then plain to see: tests/integration/test_smtp_dmarc_policy.py).
    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send(address, "someone@elsewhere.test", _message(f"ceo@{SENDER}", "spoofed"))
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")


def test_body_altered_after_signing_fails_dkim(setup, key):
    api, agent, address = setup
    raw = _message(f"alice@{SENDER}", "altered")
    signed = dkim.sign(raw, b"sel", SENDER.encode(), key[0], include_headers=[b"from", b"subject"]) + raw
    _send(address, f"alice@{SENDER}", signed.replace(b"Hello.", b"Hullo."))
    auth = _received(api, agent, "altered")["authentication"]
    assert auth["dkim"] == "fail" and auth["spf"] == "pass" and auth["dmarc"] == "pass"  # SPF aligned


def test_a_dns_timeout_is_recorded_as_temperror_and_the_mail_is_still_accepted(make_settings, world_for, make_app,
                                                                              smtp_listener):  # noqa: F811
    import socket
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # reads nothing, answers nothing
    try:
        settings = make_settings(dns_servers=f"127.0.0.1:{silent.getsockname()[1]}", dns_timeout=0.5)
        app = make_app(settings)
        world = world_for(app.test_client())
        owner = world.owner()
        agent = world.agent(owner, world.inbox(owner, "agent@acme.example.com"), ["email:read"])
        address = smtp_listener(store=app.extensions["gentbox"], settings=settings,
                                authenticate=make_authenticator(settings))
        _send(address, f"alice@{SENDER}", _message(f"alice@{SENDER}", "slowdns"))
        auth = _received(app.test_client(), agent, "slowdns")["authentication"]
        assert (auth["spf"], auth["dmarc"]) == ("temperror", "temperror")
    finally:
        silent.close()
