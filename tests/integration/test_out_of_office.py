"""Issue 27, point 3: the out-of-office reply over real SMTP. An outside sender writes in with
smtplib to our listener; the real Worker (its tailer of message.received, then delivery) answers
through the one send path to the sender's MX (an aiosmtpd receiver found through dnsmasq).
RFC 3834: one reply per sender per 7 days (injected clock), none to automated, bulk or list mail
or to the null sender, `Auto-Submitted: auto-replied` with In-Reply-To/References, and none once
`until` has passed."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from appliance import clock
from appliance.models import Approval, AutoReplyWindow, Message, SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, parsed

AGENT = "desk@away.example"



def _write(listener, sender: str, subject: str, *headers: str, envelope: str | None = None) -> str:
    message_id = f"<{subject.replace(' ', '-').lower()}@partner.example>"
    raw = message_bytes(subject, AGENT, sender=sender, message_id=message_id, body="Are you there?")
    head, body = raw.split(b"\r\n\r\n", 1)
    raw = head + b"".join(f"\r\n{h}".encode() for h in headers) + b"\r\n\r\n" + body
    with smtp_client(listener) as smtp:
        assert smtp.sendmail(sender if envelope is None else envelope, [AGENT], raw) == {}
    return message_id


def _setup(world, store, settings, client, make_settings, remote_world, smtp_listener, **auto_reply):
    owner = world.owner()
    agent = world.sender(owner, AGENT)
    with store.session() as db:  # the owner's sign-up mail is not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, mx)])
    resp = client.patch(f"/v1/inboxes/{agent.inbox_id}/settings/", headers=owner.auth,
                        json={"auto_reply": {"enabled": True, "subject": "Away", "text_body": "Back on Monday.",
                                             **auto_reply}})
    assert resp.status_code == 200, resp.json
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    return owner, agent, mx, smtp_listener(), worker


def test_out_of_office_answers_a_person_once_a_week_never_robots_and_stops_at_until(
        world, store, settings, client, make_settings, remote_world, smtp_listener) -> None:
    until = (clock.utcnow() + dt.timedelta(days=10)).isoformat()
    owner, agent, mx, listener, worker = _setup(world, store, settings, client, make_settings, remote_world,
                                                smtp_listener, until=until)
    try:
        first = _write(listener, "alice@partner.example", "Plans for Q3")
        worker.run_once()
        [reply] = mx.deliveries
        assert list(reply.rcpt_tos) == ["alice@partner.example"]
        mail = parsed(reply.data)
        assert mail["Auto-Submitted"] == "auto-replied" and mail["Subject"] == "Away"
        assert mail["In-Reply-To"] == first and first in mail["References"]
        assert "Back on Monday." in mail.get_body(("plain",)).get_content()

        # the same person again, and robots, bulk and list mail: no reply
        _write(listener, "alice@partner.example", "Still there")
        _write(listener, "robot@partner.example", "Your invoice", "Auto-Submitted: auto-generated")
        _write(listener, "news@partner.example", "Weekly news", "Precedence: bulk")
        _write(listener, "list@partner.example", "Digest", "List-Id: <team.partner.example>")
        _write(listener, "bounce@partner.example", "Returned", envelope="")
        worker.run_until_idle()
        assert len(mx.deliveries) == 1

        # a week later the same person is answered again
        clock.advance(dt.timedelta(days=7, minutes=1))
        _write(listener, "alice@partner.example", "Back yet")
        worker.run_until_idle()
        assert len(mx.deliveries) == 2 and parsed(mx.deliveries[1].data)["Auto-Submitted"] == "auto-replied"

        # past until: nobody is answered
        clock.advance(dt.timedelta(days=4))
        _write(listener, "carol@partner.example", "Hello")
        worker.run_until_idle()
        assert len(mx.deliveries) == 2
    finally:
        worker.close()
    with store.session() as db:
        senders = set(db.scalars(select(AutoReplyWindow.sender)))
    assert senders == {"alice@partner.example"}


def test_an_inbox_whose_sends_are_held_holds_its_out_of_office_too(
        world, store, settings, client, make_settings, remote_world, smtp_listener) -> None:
    owner, agent, mx, listener, worker = _setup(world, store, settings, client, make_settings, remote_world, smtp_listener)
    world.agent(owner, agent.inbox_id, ["email:send"], requires_approval=["email:send"])
    try:
        _write(listener, "alice@partner.example", "Plans for Q3")
        worker.run_until_idle()
    finally:
        worker.close()
    assert mx.deliveries == []
    with store.session() as db:
        [approval] = db.scalars(select(Approval)).all()
        held = db.get(Message, approval.resource_id)
        assert approval.action_type == "email:send" and held.status == "held" and held.subject == "Away"
