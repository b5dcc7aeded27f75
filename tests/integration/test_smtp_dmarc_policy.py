"""What the listener does with authentication results (issue 14, point 6), over SMTP with DNS
records served by dnsmasq: forged Authentication-Results naming this host are removed, a DMARC
fail under p=reject is refused with 550 5.7.1 (or quarantined, by setting), p=quarantine is stored
labelled suspicious, and mail From a domain hosted here that it did not authenticate is refused
whatever that domain publishes."""
from __future__ import annotations

import smtplib

import dkim
import pytest

from smtp.auth import make_authenticator
from tests.helpers import new_dkim_key
from tests.integration.smtp_fixtures import client, smtp_listener, stored, tls_files  # noqa: F401

SENDER = "sender.test"  # p=reject, SPF allows 127.0.0.1, DKIM key at sel._domainkey
LOOSE = "loose.test"  # p=quarantine
HOSTED = "hosted.test"  # verified here; publishes no DMARC record, SPF names another host
AGENT = f"agent@{HOSTED}"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return new_dkim_key()


@pytest.fixture
def listen(dns_server, key, world, store, settings, smtp_listener):  # noqa: F811
    """A listener checking SPF/DKIM/DMARC against dnsmasq; listen(**settings) starts it."""
    dns_server.publish(SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all", restart=False)
    dns_server.publish(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=reject", restart=False)
    dns_server.publish(f"sel._domainkey.{SENDER}", "TXT", key[1], restart=False)
    dns_server.publish(f"_dmarc.{LOOSE}", "TXT", "v=DMARC1; p=quarantine", restart=False)
    dns_server.publish(HOSTED, "TXT", "v=spf1 ip4:192.0.2.25 -all", restart=False)
    dns_server.publish(f"sel._domainkey.{HOSTED}", "TXT", key[1], restart=False)
    dns_server.restart()
    world.inbox(world.owner(), AGENT)

    def start(**overrides) -> tuple[str, int]:
        configured = settings.model_copy(update={"dns_servers": (dns_server.address,), "dns_timeout": 2.0,
                                                 **overrides})
        return smtp_listener(store=store, settings=configured, authenticate=make_authenticator(configured))

    return start


def _message(from_address: str, subject: str, extra: bytes = b"") -> bytes:
    return (f"From: <{from_address}>\r\nTo: {AGENT}\r\nSubject: {subject}\r\n".encode() + extra
            + f"Message-ID: <{subject}@{from_address.split('@')[1]}>\r\n\r\nHello.\r\n".encode())


def _signed(raw: bytes, domain: str, key: tuple[bytes, str]) -> bytes:
    return dkim.sign(raw, b"sel", domain.encode(), key[0], include_headers=[b"from", b"subject"]) + raw


def _send(address, mail_from: str, raw: bytes) -> None:
    with client(address) as smtp:
        smtp.sendmail(mail_from, [AGENT], raw)


def _refused(address, mail_from: str, raw: bytes) -> str:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send(address, mail_from, raw)
    return f"{refused.value.smtp_code} {refused.value.smtp_error.decode()}"


def test_forged_results_naming_this_host_are_removed_and_others_kept(listen, store) -> None:
    forged = (b"Authentication-Results: MAIL.GENTBOX.TEST; dkim=pass header.d=bank.test\r\n"
              b"Authentication-Results:\r\n (looks like ours) \"mail.gentbox.test.\";\r\n\tdmarc=pass\r\n"
              b"authentication-results : mail.gentbox.test 1; spf=pass\r\n"
              b"Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=sender.test\r\n")
    _send(listen(), f"alice@{SENDER}", _message(f"alice@{SENDER}", "forged", forged))
    [(message, raw)] = stored(store, subject="forged")
    assert message.authentication["dmarc"] == "pass"  # SPF, aligned
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"authentication-results") == 2, head
    assert head.startswith(b"authentication-results: mail.gentbox.test;\r\n\tspf=pass")  # ours, on top
    assert b"authentication-results: mx.elsewhere.test; spf=pass" in head
    assert b"bank.test" not in head and b"looks like ours" not in head


def test_a_dmarc_fail_under_p_reject_is_refused_and_not_stored(listen, store) -> None:
    reply = _refused(listen(), "someone@elsewhere.test", _message(f"ceo@{SENDER}", "spoofed"))
    assert reply.startswith("550 5.7.1") and SENDER in reply, reply
    assert stored(store) == []


def test_with_dmarc_reject_action_quarantine_it_is_stored_labelled_suspicious(listen, store, key) -> None:
    address = listen(dmarc_reject_action="quarantine")
    _send(address, "someone@elsewhere.test", _message(f"ceo@{SENDER}", "spoofed"))
    _send(address, f"alice@{SENDER}", _signed(_message(f"alice@{SENDER}", "genuine"), SENDER, key))
    [(spoofed, _raw)] = stored(store, subject="spoofed")
    assert spoofed.labels == ["suspicious"] and spoofed.authentication["dmarc"] == "fail"
    [(genuine, _raw)] = stored(store, subject="genuine")
    assert genuine.labels == []


def test_a_dmarc_fail_under_p_quarantine_is_stored_labelled_suspicious(listen, store) -> None:
    _send(listen(), "someone@elsewhere.test", _message(f"news@{LOOSE}", "loose"))
    [(message, _raw)] = stored(store, subject="loose")
    assert message.labels == ["suspicious"]


@pytest.mark.parametrize("mail_from", ["someone@elsewhere.test", f"boss@{HOSTED}", "<>"])
def test_mail_from_a_hosted_domain_sent_from_outside_is_refused_without_a_dmarc_record(
        listen, store, mail_from: str) -> None:
    # No valid DKIM signature; SPF none (elsewhere.test), fail (hosted.test names 192.0.2.25), or
    # the null sender; hosted.test publishes no DMARC record at all.
    reply = _refused(listen(dmarc_reject_action="quarantine"), mail_from, _message(f"boss@{HOSTED}", "fake"))
    assert reply.startswith("550 5.7.1") and HOSTED in reply, reply
    assert stored(store) == []


def test_mail_from_a_hosted_domain_with_its_own_signature_is_accepted(listen, store, key) -> None:
    _send(listen(), "someone@elsewhere.test", _signed(_message(f"boss@{HOSTED}", "forwarded"), HOSTED, key))
    [(message, _raw)] = stored(store, subject="forwarded")
    assert message.authentication["dkim"] == "pass" and message.labels == []
