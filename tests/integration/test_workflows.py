"""Issue 20, points 1 and 2: workflows over real SMTP, run by the real Worker.

- A rule `from_domain eq vendor.test → add label invoices + webhook`, made through the API:
  mail written with smtplib to our listener is labelled, the other sender's is not, and a
  loopback receiver verifies the webhook with the `standardwebhooks` library and the secret the
  API showed once. The runs endpoint lists both runs; the label event names the workflow.
- `email.reply` answers a person once (per 24 h, injected clock), with `Auto-Submitted:
  auto-replied`, to the sender's MX (an aiosmtpd receiver found through dnsmasq), and never mail
  with `Auto-Submitted: auto-generated`, `Precedence: bulk`, a `List-Id` or a null sender.
- A hostile `matches` pattern `(a+)+$` against a 10 KB subject ends within the time budget (the
  run notes why it did not match) and the worker goes on.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from sqlalchemy import select, update

from appliance import clock
from appliance.models import Approval, Event, Message, MessageRaw, SystemMail, WorkflowRun
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, parsed
from tests.integration.webhook_receiver import Receiver

DESK = "desk@vendorwatch.example"


@pytest.fixture
def settings(make_settings):
    """The webhook receiver listens on loopback over http://."""
    return make_settings(webhook_allow_private=True)


def write(listener, sender: str, subject: str, *headers: str, envelope: str | None = None, to: str = DESK) -> str:
    """Mail from sender to our listener over SMTP; returns its Message-ID."""
    message_id = f"<{time.time_ns()}.{abs(hash(subject))}@{sender.rpartition('@')[2] or 'x.example'}>"
    raw = message_bytes(subject, to, sender=sender, message_id=message_id, body="Please see the attached invoice.")
    head, body = raw.split(b"\r\n\r\n", 1)
    raw = head + b"".join(f"\r\n{h}".encode() for h in headers) + b"\r\n\r\n" + body
    with smtp_client(listener) as smtp:
        assert smtp.sendmail(sender if envelope is None else envelope, [to], raw) == {}
    return message_id


def make_workflow(client, owner, inbox_id: str, **body) -> dict:
    made = client.post("/v1/workflows/", json={"inbox_id": inbox_id, "name": "rule", "trigger":
                                               {"type": "email_received"}, **body}, headers=owner.auth)
    assert made.status_code == 201, made.json
    return made.json


def quiet(store) -> None:
    with store.session() as db:  # the owner's sign-up mail is not what these tests watch
        db.execute(update(SystemMail).values(status="sent", raw=b""))


def test_a_rule_labels_vendor_mail_and_its_webhook_verifies(world, store, settings, client, make_settings,
                                                            remote_world, smtp_listener) -> None:
    receiver = Receiver([])
    owner = world.owner()
    desk = world.sender(owner, DESK)
    quiet(store)
    made = make_workflow(client, owner, desk.inbox_id,
                         conditions=[{"field": "from_domain", "op": "eq", "value": "vendor.test"}],
                         writes=[{"target": {"type": "email.add_label", "label": "invoices"}},
                                 {"target": {"type": "webhook", "url": receiver.url, "event_type": "invoice.arrived"}}])
    assert made["secret"].startswith("whsec_") and "secret" not in client.get(
        f"/v1/workflows/{made['workflow_id']}/?inbox_id={desk.inbox_id}", headers=owner.auth).json
    receiver.secrets.append(made["secret"])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key,
                                             webhook_allow_private=True))
    try:
        invoice = write(listener, "billing@vendor.test", "Invoice 42")
        other = write(listener, "friend@elsewhere.test", "Lunch?")
        worker.run_until_idle()
        worker.run_until_idle()  # a second worker pass runs nothing twice
    finally:
        worker.close()
        receiver.stop()
    with store.session() as db:
        labels = {m.message_id_header: m.labels for m in db.scalars(select(Message))}
        applied = db.scalars(select(Event).where(Event.type == "label.applied")).all()
    assert labels[invoice] == ["invoices"] and labels[other] == []
    assert [(e.actor_kind, e.actor_id) for e in applied] == [("workflow", made["workflow_id"])]
    [hit] = receiver.hits
    assert hit.verified and hit.answered == 200
    body = json.loads(hit.body)
    assert body["type"] == "invoice.arrived" and body["data"]["message"]["subject"] == "Invoice 42"
    runs = client.get(f"/v1/workflows/{made['workflow_id']}/runs/?inbox_id={desk.inbox_id}",
                      headers=owner.auth).json["results"]
    assert [r["matched"] for r in runs] == [False, True]  # newest first
    assert runs[1]["actions"] == [{"type": "email.add_label", "outcome": "done", "error": None},
                                  {"type": "webhook", "outcome": "delivered", "error": None}]


def test_a_reply_goes_once_to_a_person_and_never_to_robots_or_bulk(world, store, settings, client, make_settings,
                                                                   remote_world, smtp_listener) -> None:
    owner = world.owner()
    desk = world.sender(owner, DESK)
    quiet(store)
    mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, mx)])
    made = make_workflow(client, owner, desk.inbox_id, writes=[{"target": {
        "type": "email.reply", "subject": "Re: {subject}", "text_body": "Thanks {from_name}, we got it."}}])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    try:
        first = write(listener, "alice@partner.example", "Plans for Q3")
        worker.run_until_idle()
        [reply] = mx.deliveries
        assert list(reply.rcpt_tos) == ["alice@partner.example"]
        mail = parsed(reply.data)
        assert mail["Auto-Submitted"] == "auto-replied" and mail["Subject"] == "Re: Plans for Q3"
        assert mail["In-Reply-To"] == first and "Thanks Alice, we got it." in mail.get_body(("plain",)).get_content()

        write(listener, "alice@partner.example", "Still there?")  # within 24 h: not again
        write(listener, "robot@partner.example", "Your invoice", "Auto-Submitted: auto-generated")
        write(listener, "news@partner.example", "Weekly news", "Precedence: bulk")
        write(listener, "list@partner.example", "Digest", "List-Id: <team.partner.example>")
        write(listener, "bounce@partner.example", "Returned", envelope="")
        worker.run_until_idle()
        assert len(mx.deliveries) == 1

        clock.advance(dt.timedelta(hours=24, minutes=1))  # a day later alice is answered again
        write(listener, "alice@partner.example", "Back yet?")
        worker.run_until_idle()
        assert len(mx.deliveries) == 2 and parsed(mx.deliveries[1].data)["Auto-Submitted"] == "auto-replied"
    finally:
        worker.close()
    owner = world.login(owner.email)  # a day later: the first access token has expired
    runs = client.get(f"/v1/workflows/{made['workflow_id']}/runs/?inbox_id={desk.inbox_id}",
                      headers=owner.auth).json["results"]
    reasons = [r["actions"][0]["error"] for r in reversed(runs)]
    assert reasons[1:6] == ["this workflow answered the sender within 24 h", "Auto-Submitted: auto-generated",
                            "Precedence: bulk", "List-Id present", "null sender"]
    assert [r["actions"][0]["outcome"] for r in reversed(runs)] == ["queued"] + ["skipped"] * 5 + ["queued"]


def test_a_hostile_pattern_on_a_10_kb_subject_ends_within_the_budget(world, store, settings, client, make_settings,
                                                                      remote_world, smtp_listener) -> None:
    owner = world.owner()
    desk = world.sender(owner, DESK)
    quiet(store)
    made = make_workflow(client, owner, desk.inbox_id,
                         # the whole header (the stored `subject` is cut at 998 characters)
                         conditions=[{"field": "header:Subject", "op": "matches", "value": "(a+)+$"}],
                         writes=[{"target": {"type": "email.add_label", "label": "caught"}}])
    listener = smtp_listener()
    # 10 KB of `a`, folded into header lines under SMTP's 1000-octet limit (each fold a space).
    write(listener, "mallory@elsewhere.test", "\r\n ".join(["a" * 900] * 12) + "!")
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    try:
        started = time.monotonic()
        assert worker.run_workflows() >= 1
        took = time.monotonic() - started
    finally:
        worker.close()
    assert took < 2.0, took  # the budget is 0.05 s; the rest is one pass's store work
    with store.session() as db:
        [run] = db.scalars(select(WorkflowRun)).all()
        [message] = db.scalars(select(Message)).all()
        raw = db.get(MessageRaw, message.id).raw
    assert raw.count(b"a") > 10240 and message.labels == []
    assert not run.matched and "took longer than" in run.actions[0]["error"]
    dry = client.post(f"/v1/workflows/{made['workflow_id']}/test/", headers=owner.auth,
                      json={"message_id": message.id, "inbox_id": desk.inbox_id})
    assert dry.status_code == 200, dry.json
    assert dry.json["matched"] is False and "took longer than" in dry.json["notes"][0]


def test_held_sends_hold_the_workflows_reply_and_a_hold_action_holds_its_forward(
        world, store, settings, client, make_settings, remote_world, smtp_listener) -> None:
    owner = world.owner()
    desk = world.sender(owner, DESK)
    quiet(store)
    mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, mx)])
    replying = make_workflow(client, owner, desk.inbox_id, writes=[{"target": {
        "type": "email.reply", "text_body": "Thanks."}}])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    try:
        held_agent = world.agent(owner, desk.inbox_id, ["email:send"], requires_approval=["email:send"])
        write(listener, "alice@partner.example", "Plans for Q3")
        worker.run_until_idle()
        first = client.get(f"/v1/workflows/{replying['workflow_id']}/runs/?inbox_id={desk.inbox_id}",
                           headers=owner.auth).json["results"]
        assert [(a["type"], a["outcome"]) for r in first for a in r["actions"]] == [("email.reply", "held")]
        client.delete(f"/v1/tokens/{held_agent.token_id}/", headers=owner.auth)  # sends are no longer held
        client.delete(f"/v1/workflows/{replying['workflow_id']}/?inbox_id={desk.inbox_id}", headers=owner.auth)
        make_workflow(client, owner, desk.inbox_id, writes=[{"target": {"type": "hold"}}, {"target": {
            "type": "email.forward", "to": "boss@partner.example"}}])
        write(listener, "bob@partner.example", "Contract")
        worker.run_until_idle()
    finally:
        worker.close()
    assert mx.deliveries == []  # neither left the box
    with store.session() as db:
        approvals = db.scalars(select(Approval).order_by(Approval.id)).all()
        held = [db.get(Message, a.resource_id) for a in approvals]
        runs = db.scalars(select(WorkflowRun).order_by(WorkflowRun.id)).all()
    assert [a.action_type for a in approvals] == ["email:send", "email:send"]
    assert [(m.status, m.subject) for m in held] == [("held", "Re: Plans for Q3"), ("held", "Fwd: Contract")]
    assert [[a["outcome"] for a in r.actions] for r in runs] == [["held", "held"]]  # the first went with its workflow
