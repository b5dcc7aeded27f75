"""Invitations received from the big calendar services (issue 18, point 4): fixtures built to
their published formats (tests/integration/calendar_mail/: Gmail's REQUEST with a VTIMEZONE and
an invite.ics copy, Outlook's weekly series with a Windows zone name and an EXDATE, Apple's
all-day event as a quoted-printable attachment) arrive over SMTP at the real listener and become
tentative events linked from their messages; malformed calendar data leaves the message whole."""
from __future__ import annotations

from pathlib import Path

from appliance.models import Inbox
from appliance.worker import Worker
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401

BOB = "bob@org-b.example"
MAIL = Path(__file__).with_name("calendar_mail")


def _receive(world, store, settings, smtp_listener, names: list[str]):  # noqa: ANN001, ANN202
    bob = world.sender(world.owner(), BOB, scopes=("calendar:read", "calendar:write", "email:read"))
    with store.session() as db:
        db.get(Inbox, bob.inbox_id).default_timezone = "Europe/Berlin"
    listener = smtp_listener()
    for name in names:
        raw = (MAIL / name).read_bytes()
        with smtp_client(listener) as smtp:
            assert smtp.sendmail("organizer@partner.example", [BOB], raw) == {}
    worker = Worker(store, settings)
    try:
        worker.read_invitations()
    finally:
        worker.close()
    return bob


def _message(client, bob, subject_start: str) -> dict:  # noqa: ANN001
    [summary] = [m for m in client.get("/v1/messages/", headers=bob.auth).json["results"]
                 if m["subject"].startswith(subject_start)]
    return client.get(f"/v1/messages/{summary['message_id']}/", headers=bob.auth).json


def test_gmail_outlook_and_apple_invitations_become_tentative_events(world, store, settings, client, smtp_listener):
    bob = _receive(world, store, settings, smtp_listener,
                   ["gmail_request.eml", "outlook_recurring.eml", "apple_all_day.eml"])
    events = client.get("/v1/calendar/events/", headers=bob.auth).json["results"]
    assert len(events) == 3  # Gmail's inline part and its invite.ics copy make one event
    by_title = {e["title"]: e for e in events}

    gmail = by_title["Quarterly review"]
    assert (gmail["status"], gmail["origin"], gmail["organizer"]) == ("tentative", "invitation",
                                                                     {"email": "dana@partner.example"})
    assert gmail["time_zone"] == "America/Los_Angeles" and gmail["start"] == "2026-03-10T18:00:00+01:00"
    assert {p["email"]: p["status"] for p in gmail["participants"]} == {"dana@partner.example": "accepted",
                                                                        BOB: "needs_action"}
    message = _message(client, bob, "Invitation: Quarterly review")
    assert message["invitation"] == {"event_id": gmail["event_id"], "method": "REQUEST",
                                     "organizer": "dana@partner.example"}
    assert [a["filename"] for a in message["attachments"]] == ["invite.ics"]

    outlook = by_title["Weekly sync"]
    assert outlook["time_zone"] == "Europe/Berlin" and outlook["recurrence"].startswith("FREQ=WEEKLY")
    week = client.get("/v1/calendar/events/?from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z&q=weekly",
                      headers=bob.auth).json["results"]
    assert [o["start"] for o in week] == ["2026-03-16T09:00:00+01:00", "2026-03-23T09:00:00+01:00",
                                          "2026-04-06T09:00:00+02:00", "2026-04-13T09:00:00+02:00",
                                          "2026-04-20T09:00:00+02:00"]  # the EXDATE of 30 March kept
    assert _message(client, bob, "Weekly sync")["invitation"]["event_id"] == outlook["event_id"]

    apple = by_title["Offsite"]
    assert (apple["all_day"], apple["start"], apple["end"]) == (True, "2026-04-03", "2026-04-05")
    assert {p["email"]: p["role"] for p in apple["participants"]}["fiona@partner.example"] == "chair"


def test_malformed_calendar_data_leaves_the_message_whole(world, store, settings, client, smtp_listener):
    bob = _receive(world, store, settings, smtp_listener, ["malformed.eml"])
    message = _message(client, bob, "Not really a calendar")
    assert message["invitation"] is None and message["text_body"].startswith("The attachment is not iCalendar.")
    assert [a["filename"] for a in message["attachments"]] == ["x.ics"]
    assert client.get("/v1/calendar/events/", headers=bob.auth).json["results"] == []
