"""SMTP submission (issue 25 point 3) against real clients: smtplib over STARTTLS (587's
equivalent) and implicit TLS (465's), a real remote MX (aiosmtpd) reached by the worker through
dnsmasq, DKIM checked by Perl's Mail::DKIM. Mail goes through the one send path: the API sees it
in the inbox's sent mail, caps and held sends apply, and a wrong sender is refused."""
from __future__ import annotations

import base64
import smtplib
import ssl

import pytest
from sqlalchemy import select

from appliance.models import Approval, AuditEntry, Message, OutboundQueue
from smtp.submission import Submission
from tests.integration.remote_mail import independent_dkim_check, remote_world  # noqa: F401
from tests.integration.imap_fixtures import imap_server  # noqa: F401
from tests.integration.smtp_fixtures import tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import SENDER, out, parsed  # noqa: F401
from tests.world import PASSWORD


@pytest.fixture
def submission(out, settings, tls_files):  # noqa: ANN001, ANN201
    """Submission on 127.0.0.1 (two free ports) with the test's store and the API's settings."""
    cert, key = tls_files
    settings = settings.model_copy(update={"tls_cert_file": cert, "tls_key_file": key})
    server = Submission(out.store, settings, host="127.0.0.1", port=0, tls_port=0)
    starttls, implicit = server.start()
    yield starttls, implicit
    server.stop()


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the test's self-signed pair
    return context


def _app_password(out) -> str:  # noqa: ANN001
    owner_auth = {"Authorization": f"Bearer {out.owner.access_token}"}
    resp = out.client.post("/v1/app-passwords/", json={"inbox_id": out.agent.inbox_id, "label": "mutt"},
                           headers=owner_auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()["password"]


def _message(subject: str, sender: str = SENDER, extra: str = "") -> bytes:
    return (f"From: Desk <{sender}>\r\nTo: Ann <ann@partner.example>\r\nBcc: hidden@partner.example\r\n"
            f"Subject: {subject}\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello Ann,\r\nthe figures are attached in spirit.\r\n").encode()


def _starttls(address, user: str, password: str) -> smtplib.SMTP:  # noqa: ANN001
    smtp = smtplib.SMTP(*address, local_hostname="laptop.example", timeout=30)
    smtp.starttls(context=_tls())
    smtp.login(user, password)
    return smtp


def _sent(out) -> list[Message]:  # noqa: ANN001
    with out.store.session() as db:
        return list(db.scalars(select(Message).where(Message.inbox_id == out.agent.inbox_id,
                                                     Message.direction == "outbound").order_by(Message.id)))


def test_a_client_submits_over_starttls_and_the_mx_gets_it_signed_without_bcc(out, submission) -> None:
    out.remote.domain("partner.example", mx=[(10, out.remote.receivers[0])])
    password = _app_password(out)
    with _starttls(submission[0], SENDER, password) as smtp:
        refused = smtp.sendmail(SENDER, ["ann@partner.example", "hidden@partner.example"], _message("Figures"))
    assert refused == {}
    [sent] = _sent(out)
    assert sent.subject == "Figures" and sent.status == "queued"
    # The API shows it as sent mail of the inbox, with the id the MSA added (RFC 6409 8.3).
    api = out.message(sent.id)
    assert api["direction"] == "outbound" and api["subject"] == "Figures"
    assert out.run() == 1
    [delivery] = out.remote.receivers[0].deliveries
    assert delivery.mail_from == SENDER
    assert sorted(delivery.rcpt_tos) == ["ann@partner.example", "hidden@partner.example"]
    msg = parsed(delivery.data)
    assert "Bcc" not in msg and b"hidden@partner.example" not in delivery.data
    assert msg["Message-ID"].endswith("@outbound-test.example>") and msg["Date"]
    verdict = independent_dkim_check(delivery.data, out.remote.dns_port)
    assert verdict["result"] == "pass", verdict
    assert out.message(sent.id)["status"] == "sent"
    with out.store.session() as db:
        entry = db.scalar(select(AuditEntry).where(AuditEntry.resource_id == sent.id))
    assert (entry.action, entry.edge, entry.actor_kind) == ("smtp.submission.send", "smtp", "user")
    assert [e["type"] for e in out.events()].count("message.sent") == 1


def test_implicit_tls_and_the_owner_password_work_and_a_reply_joins_its_thread(out, submission) -> None:
    out.remote.domain("partner.example", mx=[(10, out.remote.receivers[0])])
    first = out.send(to=[{"email": "ann@partner.example"}], subject="Plans")
    with out.store.session() as db:
        header = db.get(Message, first).message_id_header
    with smtplib.SMTP_SSL(*submission[1], context=_tls(), timeout=30) as smtp:
        smtp.login(SENDER, PASSWORD)  # the owner's own password: no second factor on this account
        smtp.sendmail(SENDER, ["ann@partner.example"],
                      _message("Re: Plans", extra=f"In-Reply-To: {header}\r\nReferences: {header}\r\n"))
    later = _sent(out)[-1]
    assert later.subject == "Re: Plans" and later.thread_id == out.message(first)["thread_id"]


def test_nothing_without_tls_and_auth_and_wrong_credentials_are_refused(out, submission) -> None:
    with smtplib.SMTP(*submission[0], local_hostname="laptop.example", timeout=30) as smtp:
        smtp.ehlo()
        assert "starttls" in smtp.esmtp_features and "auth" not in smtp.esmtp_features
        plain = base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {plain}")[0] == 538  # never a password in clear text
        assert smtp.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 530  # no relay, no sending, without AUTH
        smtp.starttls(context=_tls())
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"] and "LOGIN" in smtp.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login(SENDER, "gapp_not-a-password")
        assert refused.value.smtp_code == 535
    with smtplib.SMTP_SSL(*submission[1], context=_tls(), timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("nobody@outbound-test.example", PASSWORD)
    assert _sent(out) == []
    with out.store.session() as db:
        failed = db.scalars(select(AuditEntry.action).where(AuditEntry.action == "smtp.submission.sign_in.failed"))
        assert len(list(failed)) == 4  # smtplib's login tries PLAIN, then LOGIN: two refusals each


def test_failed_sign_ins_are_throttled(out, submission) -> None:
    codes = []
    for password in ["wrong password"] * out.settings.login_failures_account + [PASSWORD]:
        with smtplib.SMTP_SSL(*submission[1], context=_tls(), timeout=30) as smtp:
            smtp.ehlo()
            plain = base64.b64encode(f"\0{SENDER}\0{password}".encode()).decode()
            codes.append(smtp.docmd("AUTH", f"PLAIN {plain}")[0])
    # Even the right password now waits (no lockout: the delay ends), like the web and API sign-in.
    assert codes == [535] * out.settings.login_failures_account + [454]


def test_the_sender_must_be_the_signed_in_inbox(out, submission) -> None:
    password = _app_password(out)
    with _starttls(submission[0], SENDER, password) as smtp:
        code, text = smtp.mail("boss@outbound-test.example")
        assert code == 550 and b"5.7.1" in text
        smtp.rset()
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, ["ann@partner.example"], _message("Spoof", sender="ceo@bank.example"))
        assert refused.value.smtp_code == 550 and b"5.7.1" in refused.value.smtp_error
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, ["ann@partner.example"],
                          _message("Two", extra="Sender: other@outbound-test.example\r\n"))
        assert refused.value.smtp_code == 550
    assert _sent(out) == []


def test_a_held_token_is_held_and_a_capped_inbox_is_capped_over_smtp(out, submission, world) -> None:
    held = world.agent(out.owner, out.agent.inbox_id, ["email:send"], requires_approval=["email:send"])
    with _starttls(submission[0], SENDER, held.raw) as smtp:
        smtp.mail(SENDER)
        smtp.rcpt("ann@partner.example")
        code, text = smtp.data(_message("Needs a look"))
    assert code == 250 and b"Held for approval" in text
    [message] = _sent(out)
    assert message.status == "held"
    with out.store.session() as db:
        approval = db.scalar(select(Approval).where(Approval.resource_id == message.id))
    assert approval is not None and approval.status == "pending"
    with out.store.session() as db:  # nothing queued while held
        assert db.scalar(select(OutboundQueue.id).where(OutboundQueue.message_id == message.id)) is None

    owner_auth = {"Authorization": f"Bearer {out.owner.access_token}"}
    cap = out.client.put("/v1/billing/caps/sends/", json={"level": "inbox", "id": out.agent.inbox_id, "per_hour": 1},
                         headers=owner_auth)
    assert cap.status_code == 200, cap.get_data(as_text=True)
    password = _app_password(out)
    with _starttls(submission[0], SENDER, password) as smtp:
        assert smtp.sendmail(SENDER, ["ann@partner.example"], _message("One")) == {}
        with pytest.raises(smtplib.SMTPDataError) as capped:
            smtp.sendmail(SENDER, ["ann@partner.example"], _message("Two"))
    assert capped.value.smtp_code == 451 and b"4.7.1" in capped.value.smtp_error
    assert [m.subject for m in _sent(out)] == ["Needs a look", "One"]


def test_a_submitted_message_is_in_sent_over_imap_and_sender_rules_apply(out, submission, settings, tls_files,
                                                                         imap_server) -> None:
    """The copy in Sent is the same data over IMAP (issue 25), and the inbox's outbound sender
    rules refuse a recipient over SMTP as over the API (issue 20.3): 550 5.7.1, nothing stored."""
    import imaplib

    from tests.integration.imap_fixtures import client_context

    owner_auth = {"Authorization": f"Bearer {out.owner.access_token}"}
    rules = out.client.put("/v1/sender-rules/", json={"inbox_id": out.agent.inbox_id, "outbound_mode": "blocklist",
                                                      "outbound_patterns": ["@rival.test"]}, headers=owner_auth)
    assert rules.status_code == 200, rules.get_data(as_text=True)
    password = _app_password(out)
    with _starttls(submission[0], SENDER, password) as smtp:
        assert smtp.sendmail(SENDER, ["ann@partner.example"], _message("Minutes")) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, ["boss@rival.test"], _message("Offer"))
    assert refused.value.smtp_code == 550 and b"boss@rival.test" in refused.value.smtp_error
    assert [m.subject for m in _sent(out)] == ["Minutes"]
    address = imap_server(store=out.store, settings=settings)
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    try:
        imap.login(SENDER, password)
        assert imap.select("Sent")[0] == "OK"
        typ, found = imap.uid("SEARCH", None, 'SUBJECT "Minutes"')
        assert typ == "OK" and len(found[0].split()) == 1
        typ, data = imap.uid("FETCH", found[0].split()[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT DKIM-SIGNATURE)])")
        assert b"Subject: Minutes" in data[0][1] and b"DKIM-Signature" in data[0][1]  # the signed copy
    finally:
        imap.logout()
