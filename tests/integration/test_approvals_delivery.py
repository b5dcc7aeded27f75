"""Issue 8 end to end: held sends against a real remote MX. The real Worker delivers, over SMTP,
to aiosmtpd receivers on 127.0.0.x found through MX records in a real DNS server (dnsmasq), as in
tests/integration/test_outbound_delivery.py; DKIM is checked with Perl's Mail::DKIM.

What is proven: a held send never reaches the MX until approved; once approved it arrives exactly
as held (the same bytes, apart from the DKIM-Signature and trace fields) and signed; a rejected or
expired one never arrives; and the bypass attempts (a reply, a new Idempotency-Key, the agent
approving itself, another tenant approving, two approvals at once) each deliver nothing extra.
"""
from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from sqlalchemy import update

from appliance import clock
from appliance.models import SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import independent_dkim_check, remote_world  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings
from tests.world import Agent, Person

SENDER = "agent@approvals-test.example"
TRACE = re.compile(rb"^(DKIM-Signature|Received|Return-Path|X-Peer|X-MailFrom|X-RcptTo):.*?\r\n(?![ \t])",
                   re.S | re.M | re.I)


class Box:
    """The sending inbox's owner, its held agent, the remote MX, the worker and the app's client."""

    def __init__(self, world, client, store, settings, remote, owner: Person, agent: Agent, held: Agent) -> None:
        self.world, self.client, self.store, self.settings = world, client, store, settings
        self.remote, self.owner, self.agent, self.held = remote, owner, agent, held
        self.worker = Worker(store, settings)

    def hold(self, headers: dict | None = None, **body) -> str:
        body.setdefault("to", [{"email": "ann@partner.example", "name": "Ann Example"}])
        body.setdefault("subject", "Contract draft")
        body.setdefault("text_body", "Hello Ann,\n\nThe draft is attached.\n")
        resp = self.client.post("/v1/messages/", json=body, headers={**self.held.auth, **(headers or {})})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        return resp.json["approval_id"]

    def approval(self, approval_id: str) -> dict:
        resp = self.client.get(f"/v1/approvals/{approval_id}/", headers=self.owner.auth)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.json

    def decide(self, approval_id: str, verb: str = "approve", auth: dict | None = None):
        return self.client.post(f"/v1/approvals/{approval_id}/{verb}/", headers=auth or self.owner.auth)

    def raw(self, message_id: str) -> bytes:
        resp = self.client.get(f"/v1/messages/{message_id}/raw/", headers=self.agent.auth)
        assert resp.status_code == 200
        return resp.data

    def events(self) -> list[str]:
        return [e["type"] for e in self.client.get("/v1/events/", headers=self.agent.auth,
                                                   query_string={"limit": 200}).json["results"]]

    def drain(self) -> None:
        self.worker.run_until_idle()

    def delivered(self) -> list:
        return [d for receiver in self.remote.receivers for d in receiver.deliveries]


@pytest.fixture
def box(world, store, client, make_settings, remote_world):
    owner = world.owner()
    agent = world.sender(owner, SENDER, scopes=("email:send", "email:read", "approvals:read", "approvals:write"))
    held = world.agent(owner, agent.inbox_id, ["email:send", "email:read", "approvals:read", "approvals:write"],
                       requires_approval=["email:send"])
    selector, public = world.signing_key("approvals-test.example")
    remote_world.dns.publish(f"{selector}._domainkey.approvals-test.example", "TXT", f"v=DKIM1; k=rsa; p={public}")
    first, second = remote_world.receivers
    remote_world.domain("partner.example", mx=[(10, first), (20, second)])
    with store.session() as db:  # the owner's own sign-up email is not what these tests watch
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    b = Box(world, client, store, delivery_settings(make_settings, remote_world), remote_world, owner, agent, held)
    yield b
    b.worker.close()


def without_trace(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    return TRACE.sub(b"", head + b"\r\n") + sep[2:] + body


# --- held, approved, rejected, expired --------------------------------------------------------
def test_a_held_send_reaches_nobody_until_approved_then_arrives_exactly_as_held(box) -> None:
    pdf = bytes(range(256)) * 20
    approval_id = box.hold(cc=[{"email": "cy@partner.example"}], bcc=[{"email": "bo@partner.example"}],
                           attachments=[{"filename": "draft.pdf", "content_type": "application/pdf",
                                         "content_base64": __import__("base64").b64encode(pdf).decode()}])
    message_id = box.approval(approval_id)["summary"]["message_id"]
    held = box.raw(message_id)
    box.drain()
    assert box.delivered() == []
    assert box.decide(approval_id).status_code == 204
    assert box.delivered() == []  # approving queues; the worker delivers
    box.drain()
    [delivery] = box.remote.receivers[0].wait_for(1)
    assert box.delivered() == [delivery]
    assert delivery.mail_from == SENDER
    assert sorted(delivery.rcpt_tos) == ["ann@partner.example", "bo@partner.example", "cy@partner.example"]
    assert delivery.data.startswith(b"DKIM-Signature:")
    assert without_trace(delivery.data) == held  # byte for byte, headers and body
    assert b"bo@partner.example" not in delivery.data
    verdict = independent_dkim_check(delivery.data, box.remote.dns_port)
    assert verdict["result"] == "pass", verdict
    sent = box.client.get(f"/v1/messages/{message_id}/", headers=box.agent.auth).json
    assert sent["status"] == "sent" and {d["status"] for d in sent["delivery"]} == {"delivered"}
    types = box.events()
    assert types.index("approval.requested") < types.index("approval.approved") < types.index("message.sent")
    assert types.count("message.sent") == 1 and types.count("message.delivered") == 1
    box.drain()
    assert len(box.delivered()) == 1


def test_a_rejected_send_is_never_delivered(box) -> None:
    approval_id = box.hold()
    assert box.decide(approval_id, "reject").status_code == 204
    assert box.approval(approval_id)["status"] == "rejected"
    box.drain()
    clock.advance(dt.timedelta(days=2))  # past the approval's expiry and any retry: still nothing
    box.drain()
    assert box.delivered() == []
    assert "approval.rejected" in box.events() and "message.sent" not in box.events()
    assert "approval.expired" not in box.events()


def test_an_unapproved_send_expires_after_24_hours_and_is_never_delivered(box) -> None:
    approval_id = box.hold()
    clock.advance(dt.timedelta(hours=23, minutes=59))
    box.drain()
    assert box.delivered() == [] and "approval.expired" not in box.events()
    clock.advance(dt.timedelta(minutes=2))
    box.drain()
    assert box.events().count("approval.expired") == 1
    owner = box.world.login(box.owner.email)  # the first session ran out with the clock
    resp = box.decide(approval_id, auth=owner.auth)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "approval_expired"
    box.drain()
    assert box.delivered() == [] and "message.sent" not in box.events()


# --- bypass attempts --------------------------------------------------------------------------
def test_bypass_attempts_deliver_nothing(box) -> None:
    # An unheld send from the same inbox starts a thread; the held agent replies to it.
    first = box.client.post("/v1/messages/", json={"to": [{"email": "ann@partner.example"}], "subject": "Hi",
                                                   "text_body": "Hi."}, headers=box.agent.auth)
    assert first.status_code == 201
    box.drain()
    assert len(box.delivered()) == 1
    reply = box.hold(reply_to_message_id=first.json["message_id"], text_body="Following up.")
    other = {"to": [{"email": "ann@partner.example"}], "subject": "Again", "text_body": "x"}
    retried = [box.hold(headers={"Idempotency-Key": f"retry-{i}"}, **other) for i in range(3)]
    assert len({reply, *retried}) == 4  # each a new held approval, never a send
    # The agent approving its own held mail, even holding approvals:write; and so may no token of its inbox.
    for auth in (box.held.auth, box.agent.auth):
        resp = box.decide(reply, auth=auth)
        assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    # Another tenant's owner and reviewer: 404.
    stranger = box.world.owner()
    reviewer = box.world.agent(stranger, box.world.inbox(stranger), ["approvals:read", "approvals:write"])
    for auth in (stranger.auth, reviewer.auth):
        resp = box.decide(retried[0], auth=auth)
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    box.drain()
    assert len(box.delivered()) == 1
    assert {box.approval(a)["status"] for a in [reply, *retried]} == {"pending"}


def test_two_concurrent_approvals_one_succeeds_and_the_mail_goes_once(box, app) -> None:
    admin = box.world.member(box.owner, "admin")
    for _ in range(3):
        approval_id = box.hold()
        barrier = threading.Barrier(2)
        answers: list = [None, None]

        def approve(slot: int, auth: dict) -> None:
            client = app.test_client()  # one client per thread
            barrier.wait()
            resp = client.post(f"/v1/approvals/{approval_id}/approve/", headers=auth)
            answers[slot] = (resp.status_code, (resp.get_json(silent=True) or {}).get("error", {}).get("code"))

        threads = [threading.Thread(target=approve, args=(0, box.owner.auth)),
                   threading.Thread(target=approve, args=(1, admin.auth))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(answers) == [(204, None), (400, "approval_decided")], answers
    box.drain()
    assert len(box.delivered()) == 3
    assert len({d.message().get("Message-ID") for d in box.delivered()}) == 3
    assert box.events().count("approval.approved") == 3 and box.events().count("message.sent") == 3
