"""The delivery worker against real peers: MX routing, replies, retries, bounces, TLS, a smarthost.

Remote domains are published in a real DNS server (dnsmasq) and answered by real SMTP receivers
on 127.0.0.x (tests/integration/remote_mail.py); what arrives is checked with an independent
DKIM verifier (Perl's Mail::DKIM). Time moves through appliance.clock, never by sleeping.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select, update

from appliance import clock
from appliance.config import Settings
from appliance.models import Message, OutboundQueue, SystemMail
from appliance.worker import Worker
from smtp.tls import write_self_signed
from tests.integration.remote_mail import (Behaviour, RemoteReceiver, independent_dkim_check,  # noqa: F401
                                           remote_world)
from tests.world import Agent

SENDER = "agent@outbound-test.example"


@dataclass
class Out:
    client: object
    store: object
    settings: Settings
    agent: Agent
    remote: object
    worker: Worker
    owner: object = None  # the sending inbox's owner (a tests.world.Person)

    def send(self, **body) -> str:
        body.setdefault("subject", "Hello")
        body.setdefault("text_body", "Hello there.\nSecond line.")
        resp = self.client.post("/v1/messages/", json=body, headers=self.agent.auth)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.json["message_id"]

    def message(self, message_id: str) -> dict:
        resp = self.client.get(f"/v1/messages/{message_id}/", headers=self.agent.auth)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.json

    def inbox(self, **query) -> list[dict]:
        resp = self.client.get("/v1/messages/", query_string=query, headers=self.agent.auth)
        assert resp.status_code == 200
        return resp.json["results"]

    def raw(self, message_id: str) -> bytes:
        return self.client.get(f"/v1/messages/{message_id}/raw/", headers=self.agent.auth).data

    def events(self) -> list[dict]:
        return self.client.get("/v1/events/", headers=self.agent.auth).json["results"]

    def bounces(self) -> list[dict]:
        return [m for m in self.inbox(direction="inbound") if m["from"]["email"].startswith("mailer-daemon@")]

    def run(self) -> int:
        return self.worker.run_once()


def delivery_settings(make_settings, remote, **overrides) -> Settings:
    return make_settings(delivery_port=remote.port, dns_servers=remote.dns_address, dns_timeout=0.5,
                         dns_lifetime=1.0, delivery_timeout=3.0, **overrides)


@pytest.fixture
def out(world, store, client, make_settings, remote_world):
    owner = world.owner()
    agent = world.sender(owner, SENDER)
    selector, public = world.signing_key("outbound-test.example")
    remote_world.dns.publish(f"{selector}._domainkey.outbound-test.example", "TXT",
                             f"v=DKIM1; k=rsa; p={public}")
    with store.session() as db:  # the test owner's own sign-up email is not what these tests watch
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    settings = delivery_settings(make_settings, remote_world)
    worker = Worker(store, settings)
    yield Out(client, store, settings, agent, remote_world, worker, owner)
    worker.close()


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


# --- delivered -------------------------------------------------------------------------------
def test_a_sent_message_reaches_the_mx_signed_with_bcc_hidden_and_attachments_intact(out) -> None:
    first, second = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first), (20, second)])
    pdf = bytes(range(256)) * 40
    message_id = out.send(to=[{"email": "ann@partner.example", "name": "Ann Example"}],
                          cc=[{"email": "cy@partner.example"}], bcc=[{"email": "bo@partner.example"}],
                          subject="Quarterly report", html_body="<p>See <b>attached</b>.</p>",
                          attachments=[{"filename": "report.pdf", "content_type": "application/pdf",
                                        "content_base64": __import__("base64").b64encode(pdf).decode()}])
    assert out.message(message_id)["status"] == "queued"
    assert out.run() == 1
    [delivery] = first.deliveries
    assert second.deliveries == []  # the preferred MX took it
    assert delivery.mail_from == SENDER
    assert sorted(delivery.rcpt_tos) == ["ann@partner.example", "bo@partner.example", "cy@partner.example"]
    assert delivery.ehlo == out.settings.hostname
    msg = parsed(delivery.data)
    assert "Bcc" not in msg and b"bo@partner.example" not in delivery.data
    assert msg["To"] == "Ann Example <ann@partner.example>" and msg["Cc"] == "cy@partner.example"
    assert msg["From"] == f"Agent <{SENDER}>" and msg["Subject"] == "Quarterly report"
    assert msg["Message-ID"].endswith("@outbound-test.example>") and msg["Date"]
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "report.pdf" and attachment.get_content() == pdf
    verdict = independent_dkim_check(delivery.data, out.remote.dns_port)
    assert verdict["result"] == "pass", verdict
    # the RSA signature (the Ed25519 one beside it: tests/integration/test_dkim_ed25519.py)
    [signature] = [s for s in verdict["signatures"] if s["a"] == "rsa-sha256"]
    assert signature["d"] == "outbound-test.example" and signature["a"] == "rsa-sha256"
    assert signature["c"] == "relaxed/relaxed"
    signed = [h.strip().lower() for h in signature["h"].split(":")]
    for name in ("from", "subject", "to", "cc", "date", "message-id"):
        assert signed.count(name) == 2, signed  # over-signed: no second one can be added
    assert not any(part.strip().startswith("l=") for part in msg["DKIM-Signature"].split(";"))
    sent = out.message(message_id)
    assert sent["status"] == "sent"
    assert {d["recipient"]: d["status"] for d in sent["delivery"]} == {
        "ann@partner.example": "delivered", "cy@partner.example": "delivered", "bo@partner.example": "delivered"}
    assert all(d["smtp_reply"].startswith("250") and d["attempts"] == 1 for d in sent["delivery"])
    types = [e["type"] for e in out.events()]
    assert types.count("message.sent") == 1 and types.count("message.delivered") == 1


def test_the_next_mx_is_tried_when_the_preferred_one_is_unreachable(out) -> None:
    first, second = out.remote.receivers
    out.remote.domain("partner.example", mx=[(5, out.remote.dead_host()), (10, first), (20, second)])
    first.set_behaviour(Behaviour.DROP_CONNECT)
    out.send(to=[{"email": "ann@partner.example"}])
    out.run()
    assert len(second.deliveries) == 1 and first.deliveries == []
    assert first.connections == 1  # tried in preference order


def test_without_mx_the_domain_address_is_used(out) -> None:
    first, _ = out.remote.receivers
    out.remote.a_only("bare.example", first)
    message_id = out.send(to=[{"email": "x@bare.example"}])
    out.run()
    assert len(first.deliveries) == 1 and out.message(message_id)["status"] == "sent"


def test_starttls_is_used_when_offered(out) -> None:
    receiver = out.remote.add_receiver(starttls=True)
    out.remote.domain("tls.example", mx=[(10, receiver)])
    out.send(to=[{"email": "x@tls.example"}])
    out.run()
    [delivery] = receiver.deliveries
    assert delivery.tls and delivery.tls_version in ("TLSv1.2", "TLSv1.3")


# --- permanent failures ----------------------------------------------------------------------
@pytest.mark.parametrize("case", ["null_mx", "nxdomain", "rcpt_550", "data_550"])
def test_a_permanent_failure_bounces_into_the_sending_inbox_in_one_pass(out, case: str) -> None:
    first, _ = out.remote.receivers
    if case == "null_mx":
        out.remote.null_mx("nomail.example", a=first)
        rcpt, status = "x@nomail.example", "5.1.10"
    elif case == "nxdomain":
        rcpt, status = "x@no-such-domain.example", "5.1.2"
    else:
        out.remote.domain("partner.example", mx=[(10, first)])
        first.set_behaviour(Behaviour.PERMFAIL_RCPT if case == "rcpt_550" else Behaviour.PERMFAIL_DATA)
        rcpt, status = "x@partner.example", "5.1.1" if case == "rcpt_550" else "5.7.1"
    message_id = out.send(to=[{"email": rcpt}], subject="Will bounce")
    assert out.run() == 1
    assert first.deliveries == []
    sent = out.message(message_id)
    assert sent["status"] == "bounced"
    [entry] = sent["delivery"]
    assert entry["status"] == "bounced" and entry["smtp_reply"].startswith("5")
    [bounce] = out.bounces()
    assert bounce["subject"] == "Undelivered Mail Returned to Sender"
    assert bounce["thread_id"] == sent["thread_id"]  # threads with what bounced
    dsn = parsed(out.raw(bounce["message_id"]))
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    assert dsn["From"] == f"Mail Delivery System <MAILER-DAEMON@{out.settings.hostname}>"
    stored = out.store
    with stored.read_sessions() as db:
        envelope_from = db.scalar(select(Message.envelope_from).where(Message.id == bounce["message_id"]))
    assert envelope_from == ""  # the bounce itself has the null sender
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    report = parts[1].as_string()
    assert f"Final-Recipient: rfc822; {rcpt}" in report and "Action: failed" in report
    assert f"Status: {status}" in report
    assert list(parts[2].keys()) == ["Content-Type"]  # the original's headers are the part's body
    assert "Subject: Will bounce" in parts[2].get_payload() and "DKIM-Signature" not in parts[2].get_payload()
    assert "message.bounced" in [e["type"] for e in out.events()]


def test_a_mixed_outcome_is_partially_delivered_and_bounces_only_the_refused(out) -> None:
    first, _ = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first)])
    first.set_behaviour(Behaviour.PERMFAIL_RCPT, recipient="gone@partner.example")
    message_id = out.send(to=[{"email": "ann@partner.example"}, {"email": "gone@partner.example"}])
    out.run()
    assert [list(d.rcpt_tos) for d in first.deliveries] == [["ann@partner.example"]]
    sent = out.message(message_id)
    assert sent["status"] == "partially_delivered"
    assert {d["recipient"]: d["status"] for d in sent["delivery"]} == {
        "ann@partner.example": "delivered", "gone@partner.example": "bounced"}
    [bounce] = out.bounces()
    assert "gone@partner.example" in out.message(bounce["message_id"])["text_body"]


# --- temporary failures, retries, expiry -----------------------------------------------------
@pytest.mark.parametrize("case", ["rcpt_451", "data_451", "dropped", "stalled", "servfail", "dns_timeout"])
def test_a_temporary_failure_is_retried_on_schedule_then_delivered(out, case: str) -> None:
    first, _ = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first)])
    behaviour = {"rcpt_451": Behaviour.TEMPFAIL_RCPT, "data_451": Behaviour.TEMPFAIL_DATA,
                 "dropped": Behaviour.DROP_DATA, "stalled": Behaviour.STALL}.get(case)
    if behaviour is not None:
        first.set_behaviour(behaviour)
    else:
        out.remote.break_dns("partner.example", mode="servfail" if case == "servfail" else "timeout")
    message_id = out.send(to=[{"email": "ann@partner.example"}])
    out.run()
    sent = out.message(message_id)
    [entry] = sent["delivery"]
    assert sent["status"] == "sending" and entry["status"] == "deferred", sent
    assert entry["smtp_reply"].startswith("4"), entry
    next_at = dt.datetime.fromisoformat(entry["next_attempt_at"].replace("Z", "+00:00"))
    last_at = dt.datetime.fromisoformat(entry["last_attempt_at"].replace("Z", "+00:00"))
    assert 55 <= (next_at - last_at).total_seconds() <= 65  # the first retry waits a minute
    assert out.run() == 0  # not due yet
    assert "message.deferred" in [e["type"] for e in out.events()]
    first.reset_behaviour()
    out.remote.fix_dns("partner.example") if behaviour is None else None
    clock.advance(dt.timedelta(seconds=61))
    assert out.run() == 1
    sent = out.message(message_id)
    assert sent["status"] == "sent" and sent["delivery"][0]["attempts"] == 2
    assert len(first.deliveries) == 1


def test_the_retry_schedule_grows(out) -> None:
    first, _ = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first)])
    first.set_behaviour(Behaviour.TEMPFAIL_RCPT)
    out.send(to=[{"email": "ann@partner.example"}])
    waits = []
    for _ in range(6):
        out.run()
        with out.store.read_sessions() as db:
            row = db.scalars(select(OutboundQueue)).one()
            waits.append(round((row.next_attempt_at - clock.utcnow()).total_seconds() / 60))
        clock.advance(row.next_attempt_at - clock.utcnow() + dt.timedelta(seconds=1))
    assert waits == [1, 5, 15, 30, 60, 60]


def test_a_delay_notice_after_four_hours_then_a_bounce_at_expiry(out) -> None:
    first, _ = out.remote.receivers
    out.remote.domain("partner.example", mx=[(10, first)])
    first.set_behaviour(Behaviour.TEMPFAIL_RCPT)
    message_id = out.send(to=[{"email": "ann@partner.example"}], subject="Stuck")
    out.run()
    assert out.bounces() == []
    clock.advance(dt.timedelta(hours=4, minutes=1))
    out.run()
    [notice] = out.bounces()
    assert notice["subject"] == "Delayed Mail (still being retried)"
    report = parsed(out.raw(notice["message_id"])).as_string()
    assert "Action: delayed" in report and "Will-Retry-Until:" in report
    assert out.message(message_id)["delivery"][0]["status"] == "deferred"
    clock.advance(dt.timedelta(hours=4, minutes=1))
    out.run()
    assert len(out.bounces()) == 1  # one delay notice, not one per attempt
    clock.advance(dt.timedelta(days=5))
    out.run()
    sent = out.message(message_id)
    assert sent["status"] == "bounced" and sent["delivery"][0]["status"] == "bounced"
    assert "gave up after" in sent["delivery"][0]["smtp_reply"]
    subjects = sorted(b["subject"] for b in out.bounces())
    assert subjects == ["Delayed Mail (still being retried)", "Undelivered Mail Returned to Sender"]
    assert first.deliveries == []


# --- the appliance's own mail ----------------------------------------------------------------
def test_the_waitlist_approval_email_is_delivered_and_its_link_works(out, world, client) -> None:
    first, _ = out.remote.receivers
    out.remote.domain("newcomer.example", mx=[(10, first)])
    world.signup_link("ada@newcomer.example")  # approve: the sign-up email is queued
    out.run()
    [delivery] = first.deliveries
    assert list(delivery.rcpt_tos) == ["ada@newcomer.example"]
    body = parsed(delivery.data).get_content()
    link = next(word for word in body.split() if word.startswith("http"))
    query = parse_qs(urlparse(link).query)
    assert query["email"] == ["ada@newcomer.example"]
    resp = client.post("/auth/signup/", json={"email": "ada@newcomer.example", "signup_token": query["signup_token"][0],
                                              "password": "a long enough password", "name": "Ada"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    with out.store.read_sessions() as db:
        mail = db.scalars(select(SystemMail).where(SystemMail.rcpt_to == "ada@newcomer.example")).one()
    assert mail.status == "sent" and mail.raw == b""  # no copy of the one-time link is kept


def test_undeliverable_system_mail_fails_without_a_bounce(out, world) -> None:
    world.signup_link("ada@no-such-domain.example")
    out.run()
    with out.store.read_sessions() as db:
        mail = db.scalars(select(SystemMail).where(SystemMail.rcpt_to == "ada@no-such-domain.example")).one()
        messages = db.scalar(select(func.count()).select_from(Message))
    assert mail.status == "failed" and mail.raw == b""
    assert messages == 0  # no DSN: there is no inbox to return it to, and never a bounce to <>


# --- a smarthost -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_a_smarthost_takes_all_mail_over_verified_tls_with_auth(out, make_settings, tmp_path, mode: str) -> None:
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    write_self_signed(cert, key, "localhost")
    relay = RemoteReceiver("127.0.0.1", 0, starttls=mode == "starttls", implicit_tls=mode == "implicit",
                           credentials={"relayuser": "relay secret"}, tls_files=(cert, key)).start()
    try:
        settings = make_settings(relay_host="localhost", relay_port=relay.port, relay_tls=mode,
                                 relay_username="relayuser", relay_password="relay secret", relay_ca_file=str(cert),
                                 delivery_timeout=3.0)
        worker = Worker(out.store, settings)
        try:
            message_id = out.send(to=[{"email": "ann@anywhere-at-all.example"}])  # no MX needed
            worker.run_once()
        finally:
            worker.close()
        [delivery] = relay.deliveries
        assert delivery.tls and delivery.auth_user == "relayuser"
        assert list(delivery.rcpt_tos) == ["ann@anywhere-at-all.example"]
        assert out.message(message_id)["status"] == "sent"
    finally:
        relay.stop()


def test_a_smarthost_that_refuses_the_credentials_defers(out, make_settings, tmp_path) -> None:
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    write_self_signed(cert, key, "localhost")
    relay = RemoteReceiver("127.0.0.1", 0, starttls=True, credentials={"relayuser": "right"},
                           tls_files=(cert, key)).start()
    try:
        settings = make_settings(relay_host="localhost", relay_port=relay.port, relay_username="relayuser",
                                 relay_password="wrong", relay_ca_file=str(cert), delivery_timeout=3.0)
        worker = Worker(out.store, settings)
        try:
            message_id = out.send(to=[{"email": "ann@anywhere-at-all.example"}])
            worker.run_once()
        finally:
            worker.close()
        [entry] = out.message(message_id)["delivery"]
        assert entry["status"] == "deferred" and "4.7.8" in entry["smtp_reply"]
        assert relay.deliveries == []
    finally:
        relay.stop()


def test_a_smarthost_with_an_untrusted_certificate_gets_no_mail(out, make_settings, tmp_path) -> None:
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    write_self_signed(cert, key, "localhost")
    relay = RemoteReceiver("127.0.0.1", 0, starttls=True, tls_files=(cert, key)).start()
    try:
        settings = make_settings(relay_host="localhost", relay_port=relay.port, delivery_timeout=3.0)
        worker = Worker(out.store, settings)  # no relay_ca_file: the system CAs do not know it
        try:
            message_id = out.send(to=[{"email": "ann@anywhere-at-all.example"}])
            worker.run_once()
        finally:
            worker.close()
        assert relay.deliveries == []
        assert out.message(message_id)["delivery"][0]["status"] == "deferred"
    finally:
        relay.stop()
