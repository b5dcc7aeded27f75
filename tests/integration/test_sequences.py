"""Follow-up sequences (issue 20.5): three steps, the first at once, the second two days later
(the clock injected through appliance.clock) at the same time of day in the inbox's zone, both in
one thread as the remote MX sees it; the contact's reply over real SMTP ends the enrollment, so
the third never goes. The steps are planned in the schedule and sent by the worker through the
one send path; `active_sequences` on the contact follows the enrollment."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from appliance import clock
from appliance.models import Schedule, SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings

UTC = dt.timezone.utc
# Saturday 27 March 2027, 10:00 in Berlin (CET); summer time starts on Sunday the 28th.
START = dt.datetime(2027, 3, 27, 9, 0, tzinfo=UTC)
STEP_TWO = dt.datetime(2027, 3, 29, 8, 0, tzinfo=UTC)  # Monday 10:00 in Berlin (CEST): same time of day
SCOPES = ["sequences:write", "contacts:read", "contacts:write", "email:read", "email:send"]


@pytest.fixture
def setup(world, store, client, settings, make_settings, remote_world):  # noqa: F811
    clock.advance(START - clock.utcnow())
    owner = world.owner()
    sender = world.sender(owner, "sales@seq.test")
    selector, public = world.signing_key("seq.test")
    remote_world.dns.publish(f"{selector}._domainkey.seq.test", "TXT", f"v=DKIM1; k=rsa; p={public}")
    zoned = client.patch(f"/v1/inboxes/{sender.inbox_id}/", json={"default_timezone": "Europe/Berlin"},
                         headers=owner.auth)
    assert zoned.status_code == 200, zoned.get_json()
    with store.session() as db:  # the owner's sign-up email is not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    receiver = remote_world.receivers[0]
    remote_world.domain("remote.test", mx=[(10, receiver)])
    agent = world.agent(owner, sender.inbox_id, SCOPES)
    # The worker signs the steps: it needs the app's secret key (the one the DKIM keys are sealed with).
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    yield agent, receiver, worker
    worker.close()


def _sequence(client, agent) -> str:
    made = client.post("/v1/sequences/", json={"name": "Trial follow-up", "exit_on_reply": True, "emails": [
        {"delay_days": 0, "subject": "Your trial", "body": "Welcome to the trial."},
        {"delay_days": 2, "body": "Any questions so far?"},
        {"delay_days": 3, "body": "Last note from us."}]}, headers=agent.auth)
    assert made.status_code == 201, made.get_json()
    assert made.json["sender_inbox_id"] == agent.inbox_id and len(made.json["emails"]) == 3
    return made.json["sequence_id"]


def _contact(client, agent) -> str:
    made = client.post("/v1/contacts/", json={"full_name": "Carol Remote",
                                              "emails": [{"address": "carol@remote.test"}]},
                       headers=agent.auth)
    assert made.status_code == 201, made.get_json()
    return made.json["contact_id"]


def _enrollment(client, agent, sequence_id: str) -> dict:
    [row] = client.get(f"/v1/sequences/{sequence_id}/enrollments/", headers=agent.auth).json["results"]
    return row


def test_three_steps_in_one_thread_stop_when_the_contact_replies(setup, client, store, smtp_listener) -> None:
    agent, receiver, worker = setup
    sequence_id, contact_id = _sequence(client, agent), _contact(client, agent)
    enrolled = client.post(f"/v1/sequences/{sequence_id}/enrollments/", json={"contact_id": contact_id},
                           headers=agent.auth)
    assert enrolled.status_code == 201, enrolled.get_json()
    assert (enrolled.json["status"], enrolled.json["next_step"]) == ("active", 0)
    detail = client.get(f"/v1/contacts/{contact_id}/", headers=agent.auth).json
    assert [s["sequence_id"] for s in detail["active_sequences"]] == [sequence_id]

    worker.run_until_idle()  # step 1: due at once
    [first] = receiver.wait_for(1)
    assert first.rcpt_tos == ("carol@remote.test",) and first.message()["Subject"] == "Your trial"
    step = _enrollment(client, agent, sequence_id)
    assert step["next_step"] == 1 and step["thread_id"]
    with store.session() as db:
        due = db.scalar(select(Schedule.due_at).where(Schedule.key == f"sequence:{step['enrollment_id']}"))
    assert dt.timedelta(0) <= due - STEP_TWO < dt.timedelta(minutes=1)  # the clock runs on from START meanwhile

    clock.advance(due - dt.timedelta(minutes=1) - clock.utcnow())
    worker.run_until_idle()
    assert len(receiver.deliveries) == 1  # not yet
    clock.advance(due - clock.utcnow())
    worker.run_until_idle()
    second = receiver.wait_for(2)[1].message()
    assert second["Subject"] == "Re: Your trial" and "Any questions so far?" in second.get_body().get_content()
    assert second["In-Reply-To"] == first.message()["Message-ID"]  # the contact's mail client threads it
    after_two = _enrollment(client, agent, sequence_id)
    assert after_two["thread_id"] == step["thread_id"] and after_two["next_step"] == 2

    # Carol answers over SMTP, in the thread.
    reply = (f"From: Carol Remote <carol@remote.test>\r\nTo: sales@seq.test\r\nSubject: Re: Your trial\r\n"
             f"Message-ID: <reply1@remote.test>\r\nIn-Reply-To: {second['Message-ID']}\r\n"
             f"Date: Mon, 29 Mar 2027 10:30:00 +0200\r\n\r\nYes, one question.\r\n").encode()
    with smtp_client(smtp_listener()) as smtp:
        smtp.sendmail("carol@remote.test", ["sales@seq.test"], reply)
    worker.run_until_idle()
    ended = _enrollment(client, agent, sequence_id)
    assert (ended["status"], ended["exit_reason"], ended["next_step"]) == ("exited", "replied", 2)
    assert client.get(f"/v1/contacts/{contact_id}/", headers=agent.auth).json["active_sequences"] == []
    clock.advance(dt.timedelta(days=10))
    worker.run_until_idle()
    assert len(receiver.deliveries) == 2  # the third step never went
    with store.session() as db:
        assert db.scalar(select(Schedule.id).where(Schedule.key == f"sequence:{ended['enrollment_id']}")) is None


def test_an_out_of_office_answer_is_no_reply_and_the_last_step_completes(setup, client, smtp_listener) -> None:
    agent, receiver, worker = setup
    sequence_id, contact_id = _sequence(client, agent), _contact(client, agent)
    client.post(f"/v1/sequences/{sequence_id}/enrollments/", json={"contact_id": contact_id}, headers=agent.auth)
    worker.run_until_idle()
    [first] = receiver.wait_for(1)
    auto = (f"From: carol@remote.test\r\nTo: sales@seq.test\r\nSubject: Out of office\r\n"
            f"Auto-Submitted: auto-replied\r\nIn-Reply-To: {first.message()['Message-ID']}\r\n\r\nAway.\r\n").encode()
    with smtp_client(smtp_listener()) as smtp:
        smtp.sendmail("carol@remote.test", ["sales@seq.test"], auto)
    for _ in range(2):
        clock.advance(dt.timedelta(days=3))
        worker.run_until_idle()
    assert len(receiver.wait_for(3)) == 3
    done = _enrollment(client, agent, sequence_id)
    assert (done["status"], done["exit_reason"], done["next_step"]) == ("completed", None, 3)
    # Enrolling the same contact again while active is a conflict; after it ended it is not.
    again = client.post(f"/v1/sequences/{sequence_id}/enrollments/", json={"contact_id": contact_id},
                        headers=agent.auth)
    assert again.status_code == 201, again.get_json()
    dup = client.post(f"/v1/sequences/{sequence_id}/enrollments/", json={"contact_id": contact_id}, headers=agent.auth)
    assert dup.status_code == 409
    cancelled = client.delete(f"/v1/sequences/{sequence_id}/enrollments/{again.json['enrollment_id']}/",
                              headers=agent.auth)
    assert cancelled.status_code == 204
