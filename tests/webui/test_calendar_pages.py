"""Issue 18, the calendar pages: a week view and agenda per inbox, creating and editing an event,
cancelling one occurrence, the feed URL shown once (and the old one dead), answering a received
invitation from the message view, and another tenant's calendar is a 404 page."""
from __future__ import annotations

import html
import re

from appliance.models import Inbox
from appliance.worker import Worker
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401
from tests.integration.test_calendar_received import MAIL
from tests.webui.conftest import text_of

FEED = re.compile(r'<code class="raw-token" id="raw-feed">([^<]+)</code>')


def _events(client, agent) -> list[dict]:  # noqa: ANN001
    return client.get("/v1/calendar/events/", headers=agent.auth).json["results"]


def test_week_view_create_edit_and_cancel_an_occurrence(web, world, store, client):
    owner = world.owner()
    agent = world.sender(owner, "plans@cal.example", scopes=("calendar:read", "calendar:write"))
    with store.session() as db:
        db.get(Inbox, agent.inbox_id).default_timezone = "Europe/Berlin"
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/calendar/{agent.inbox_id}/?week=2030-03-04"))
    assert "Week of 2030-03-04" in page and "Times in Europe/Berlin" in page
    made = web.post(f"/admin/calendar/{agent.inbox_id}/events/", {
        "title": "Gym", "start": "2030-03-05T18:00", "duration": "1 hour", "time_zone": "Europe/Berlin",
        "recurrence": "FREQ=DAILY;COUNT=3", "participants": "", "week": "2030-03-04"})
    assert made.status_code == 303
    [event] = _events(client, agent)
    page = text_of(web.get(f"/admin/calendar/{agent.inbox_id}/?week=2030-03-04"))
    assert page.count(f'data-event="{event["event_id"]}"') == 3 and "18:00–19:00" in page

    edited = web.post(f"/admin/calendar/{agent.inbox_id}/events/{event['event_id']}/",
                      {"title": "Gym class", "start": "2030-03-05T19:00", "duration": "PT1H", "location": "Hall",
                       "recurrence": "FREQ=DAILY;COUNT=3", "participants": ""})
    assert edited.status_code == 303
    changed = client.get(f"/v1/calendar/events/{event['event_id']}/", headers=agent.auth).json
    assert (changed["title"], changed["start"], changed["location"], changed["sequence"]) == (
        "Gym class", "2030-03-05T19:00:00+01:00", "Hall", 1)
    one = web.post(f"/admin/calendar/{agent.inbox_id}/events/{event['event_id']}/delete/",
                   {"occurrence_start": "2030-03-06T19:00:00+01:00"})
    assert one.status_code == 303
    page = text_of(web.get(f"/admin/calendar/{agent.inbox_id}/?week=2030-03-04"))
    assert page.count(f'data-event="{event["event_id"]}"') == 2
    refused = web.post(f"/admin/calendar/{agent.inbox_id}/events/", {"title": "x", "start": "whenever-ish ?"},
                       follow_redirects=True)
    assert "is not a time this server understands" in html.unescape(text_of(refused))
    assert len(_events(client, agent)) == 1


def test_the_feed_url_is_shown_once_and_a_new_one_kills_it(web, world, store, client):
    owner = world.owner()
    agent = world.sender(owner, "feeds@cal.example", scopes=("calendar:read", "calendar:write"))
    web.sign_in(owner.email)
    web.get(f"/admin/calendar/{agent.inbox_id}/")
    [default] = [c for c in client.get("/v1/calendar/calendars/", headers=agent.auth).json["results"]
                 if c["name"] == "default"]
    first = web.post(f"/admin/calendar/{agent.inbox_id}/calendars/{default['calendar_id']}/feed-key/")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    url = html.unescape(FEED.search(text_of(first)).group(1))
    assert client.get(url).status_code == 200 and b"BEGIN:VCALENDAR" in client.get(url).data
    second = web.post(f"/admin/calendar/{agent.inbox_id}/calendars/{default['calendar_id']}/feed-key/")
    assert client.get(url).status_code == 404
    assert client.get(html.unescape(FEED.search(text_of(second)).group(1))).status_code == 200


def test_answering_an_invitation_from_the_message_view(web, world, store, settings, client, smtp_listener):
    owner = world.owner()
    bob = world.sender(owner, "bob@org-b.example", scopes=("calendar:read", "calendar:write", "email:read"))
    with smtp_client(smtp_listener()) as smtp:
        smtp.sendmail("dana@partner.example", ["bob@org-b.example"],
                      (MAIL / "gmail_request.eml").read_bytes())
    worker = Worker(store, settings)
    try:
        worker.read_invitations()
    finally:
        worker.close()
    [message] = client.get("/v1/messages/", headers=bob.auth).json["results"]
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/mail/{bob.inbox_id}/messages/{message['message_id']}/"))
    assert "Calendar invitation" in page and "dana@partner.example" in page
    [event] = _events(client, bob)
    answered = web.post(f"/admin/calendar/{bob.inbox_id}/events/{event['event_id']}/respond/",
                        {"response": "accepted", "message_id": message["message_id"]})
    assert answered.status_code == 303 and message["message_id"] in answered.headers["Location"]
    got = client.get(f"/v1/calendar/events/{event['event_id']}/", headers=bob.auth).json
    assert {p["email"]: p["status"] for p in got["participants"]}["bob@org-b.example"] == "accepted"


def test_another_tenants_calendar_is_a_404_page(web, world, store):
    owner, other = world.owner(), world.owner()
    inbox = world.inbox(other)
    web.sign_in(owner.email)
    assert web.get(f"/admin/calendar/{inbox}/").status_code == 404


def test_a_week_at_the_calendars_edge_and_odd_digits_are_refused_not_a_500(web, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    web.sign_in(owner.email)
    for week in ("0001-01-01", "9999-12-31"):
        assert web.get(f"/admin/calendar/{inbox_id}/?week={week}").status_code == 400
    assert web.get(f"/admin/inboxes/{inbox_id}/contacts/?position=%C2%B2").status_code == 400
