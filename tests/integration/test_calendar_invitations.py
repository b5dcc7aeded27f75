"""Invitations as real mail (issue 18, points 3 and 4), end to end.

Alice's agent (tenant A) invites Bob (an inbox of tenant B on the same appliance: delivered by
the worker through the inbound path) and Carol (outside: an aiosmtpd MX found through dnsmasq).
Bob's inbox shows a tentative event linked from the message; Bob accepts (a REPLY back to
Alice); Carol's calendar answers over SMTP to the real listener; Alice's event shows both
accepted; Alice moves the event (SEQUENCE 1) and then cancels it: Bob's event follows, Carol gets
METHOD:CANCEL. Every iCalendar body is parsed back with icalendar and has what iTIP requires.
"""
from __future__ import annotations

import email.message
import email.policy
import email.utils

import icalendar
from sqlalchemy import update

from appliance.models import Inbox, SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, parsed

ALICE, BOB, CAROL = "alice@org-a.example", "bob@org-b.example", "carol@partner.example"
SCOPES = ("calendar:read", "calendar:write", "email:send", "email:read")
REQUIRED = ("UID", "SEQUENCE", "DTSTAMP", "ORGANIZER", "ATTENDEE")


def calendar_of(message: email.message.EmailMessage) -> tuple[str, icalendar.Calendar]:
    """The text/calendar alternative (with its method parameter), parsed; checks iTIP's musts."""
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in message.iter_parts()]
    assert kinds == ["text/plain", "text/html", "text/calendar"], kinds
    part = [p for p in message.iter_parts() if p.get_content_type() == "text/calendar"][0]
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    method = str(cal["METHOD"])
    assert part.get_param("method") == method
    for event in cal.walk("VEVENT"):
        for name in REQUIRED:
            assert event.get(name) is not None, (method, name)
    return method, cal


def _attendees(cal: icalendar.Calendar) -> dict[str, str]:
    [event] = [e for e in cal.walk("VEVENT") if e.get("RECURRENCE-ID") is None]
    found = event["ATTENDEE"] if isinstance(event["ATTENDEE"], list) else [event["ATTENDEE"]]
    return {str(a).removeprefix("mailto:"): str(a.params["PARTSTAT"]) for a in found}


def carol_reply(request: icalendar.Calendar, partstat: str) -> bytes:
    """What Carol's calendar sends back: METHOD:REPLY with her own ATTENDEE only."""
    [source] = request.walk("VEVENT")
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Partner//Calendar//EN")
    cal.add("version", "2.0")
    cal.add("method", "REPLY")
    event = icalendar.Event()
    for name in ("UID", "SEQUENCE", "DTSTART", "DTEND", "SUMMARY", "ORGANIZER"):
        event[name] = source[name]
    event.add("dtstamp", source["DTSTAMP"].dt)
    attendee = icalendar.vCalAddress(f"mailto:{CAROL}")
    attendee.params["PARTSTAT"] = partstat
    event.add("attendee", attendee)
    cal.add_component(event)
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = f"Carol <{CAROL}>", ALICE, "Accepted: Planning"
    msg["Message-ID"], msg["Date"] = email.utils.make_msgid(domain="partner.example"), email.utils.formatdate()
    msg.set_content("Carol accepted.")
    msg.add_alternative(cal.to_ical().decode(), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes()


def _event(client, agent, event_id: str) -> dict:  # noqa: ANN001
    resp = client.get(f"/v1/calendar/events/{event_id}/", headers=agent.auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def _statuses(event: dict) -> dict[str, str]:
    return {p["email"]: p["status"] for p in event["participants"]}


def test_an_invitation_round_trip_over_smtp(world, store, client, make_settings, remote_world, smtp_listener):
    alice = world.sender(world.owner(), ALICE, scopes=SCOPES)
    bob = world.sender(world.owner(), BOB, scopes=SCOPES)
    with store.session() as db:
        db.execute(update(SystemMail).values(status="sent", raw=b""))
        db.get(Inbox, bob.inbox_id).default_timezone = "America/New_York"
    carol_mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, carol_mx)])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world))
    try:
        # 1. Alice invites Bob and Carol; the worker delivers (Bob locally, Carol to her MX).
        made = client.post("/v1/calendar/events/", headers=alice.auth, json={
            "title": "Planning", "start": "2030-06-03T10:00:00", "duration": "PT1H", "time_zone": "Europe/Berlin",
            "location": "Room 1", "participants": [{"name": "Bob", "email": BOB},
                                                   {"name": "Carol", "email": CAROL, "role": "optional"}]})
        assert made.status_code == 201, made.json
        event_id = made.json["event_id"]
        worker.run_once()
        [to_carol] = carol_mx.deliveries
        method, request = calendar_of(parsed(to_carol.data))
        assert method == "REQUEST" and _attendees(request) == {BOB: "NEEDS-ACTION", CAROL: "NEEDS-ACTION"}
        assert str(request.walk("VEVENT")[0]["ORGANIZER"]) == f"mailto:{ALICE}"
        assert parsed(to_carol.data)["From"].addresses[0].addr_spec == ALICE
        assert "DKIM-Signature" in parsed(to_carol.data)

        # 2. Bob's inbox: the message links a tentative event, shown in Bob's zone.
        worker.read_invitations()
        [invite] = client.get("/v1/messages/", headers=bob.auth).json["results"]
        full = client.get(f"/v1/messages/{invite['message_id']}/", headers=bob.auth).json
        assert full["invitation"]["method"] == "REQUEST" and full["invitation"]["organizer"] == ALICE
        bobs = _event(client, bob, full["invitation"]["event_id"])
        assert (bobs["status"], bobs["origin"], bobs["title"]) == ("tentative", "invitation", "Planning")
        assert bobs["start"] == "2030-06-03T04:00:00-04:00" and bobs["ical_uid"] == made.json["ical_uid"]

        # 3. Bob accepts: a REPLY to Alice; Carol's calendar answers over SMTP to the listener.
        answered = client.post(f"/v1/calendar/events/{bobs['event_id']}/respond/", headers=bob.auth,
                               json={"response": "accepted", "comment": "See you"})
        assert answered.status_code == 200 and _statuses(answered.json)[BOB] == "accepted"
        with smtp_client(listener) as smtp:
            assert smtp.sendmail(CAROL, [ALICE], carol_reply(request, "ACCEPTED")) == {}
        worker.run_once()
        worker.read_invitations()
        alices = _event(client, alice, event_id)
        assert _statuses(alices) == {BOB: "accepted", CAROL: "accepted"}
        replies = [m for m in client.get("/v1/messages/", headers=alice.auth).json["results"]
                   if m["direction"] == "inbound"]
        assert len(replies) == 2
        assert {m["from"]["email"] for m in replies} == {BOB, CAROL}  # so Bob's REPLY below is checked
        for message in replies:
            full = client.get(f"/v1/messages/{message['message_id']}/", headers=alice.auth).json
            assert full["invitation"] == {"event_id": event_id, "method": "REPLY", "organizer": ALICE}
            raw = client.get(f"/v1/messages/{message['message_id']}/raw/", headers=alice.auth).data
            if parsed(raw)["From"].addresses[0].addr_spec == BOB:
                method, reply = calendar_of(parsed(raw))
                assert method == "REPLY" and _attendees(reply) == {BOB: "ACCEPTED"}

        # 4. Alice moves it: SEQUENCE 1 to both; Bob's copy follows and keeps his answer.
        moved = client.patch(f"/v1/calendar/events/{event_id}/", headers=alice.auth,
                             json={"start": "2030-06-03T11:00:00"})
        assert moved.status_code == 200 and moved.json["sequence"] == 1
        worker.run_once()
        method, update_ = calendar_of(parsed(carol_mx.deliveries[-1].data))
        assert method == "REQUEST" and int(update_.walk("VEVENT")[0]["SEQUENCE"]) == 1
        worker.read_invitations()
        bobs = _event(client, bob, bobs["event_id"])
        assert bobs["start"] == "2030-06-03T05:00:00-04:00" and _statuses(bobs)[BOB] == "accepted"

        # 5. Alice cancels: METHOD:CANCEL to both; Bob's event is cancelled.
        assert client.delete(f"/v1/calendar/events/{event_id}/", headers=alice.auth).status_code == 204
        worker.run_once()
        method, cancel = calendar_of(parsed(carol_mx.deliveries[-1].data))
        assert method == "CANCEL" and int(cancel.walk("VEVENT")[0]["SEQUENCE"]) == 2
        assert str(cancel.walk("VEVENT")[0]["STATUS"]) == "CANCELLED"
        worker.read_invitations()
        assert _event(client, bob, bobs["event_id"])["status"] == "cancelled"
    finally:
        worker.close()


def test_a_held_send_holds_the_invitation_too(world, store, client):
    owner = world.owner()
    box = world.sender(owner, "held@org-c.example", scopes=SCOPES)
    held = world.agent(owner, box.inbox_id, list(SCOPES), requires_approval=["email:send"])
    made = client.post("/v1/calendar/events/", headers=held.auth, json={
        "title": "Held", "start": "2030-01-01T10:00", "participants": [{"email": CAROL}]})
    assert made.status_code == 201, made.json
    approvals = client.get("/v1/approvals/", headers=owner.auth, query_string={"inbox_id": box.inbox_id}).json
    [pending] = [a for a in approvals["results"] if a["status"] == "pending"]
    assert pending["action_type"] == "email:send" and pending["summary"]["recipients"] == [CAROL]
    message = client.get(f"/v1/messages/{pending['summary']['message_id']}/", headers=box.auth).json
    assert message["status"] == "held" and message["subject"].startswith("Invitation: Held")


def test_the_upgrade_starts_the_invitation_reader_after_the_mail_already_there(world, store):
    from sqlalchemy import text

    from tests.helpers import alembic
    world.owner()  # events exist (a sign-up, an inbox) before the calendar arrives
    alembic(store, "downgrade", "0024_tasks_agenda")
    with store.engine.begin() as conn:
        last = conn.execute(text("SELECT MAX(seq) FROM events")).scalar()
        assert last and not conn.execute(text("SELECT 1 FROM alert_cursors WHERE name = 'calendar-imip'")).all()
    alembic(store, "upgrade", "head")
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT last_seq FROM alert_cursors WHERE name = 'calendar-imip'")).scalar() == last
