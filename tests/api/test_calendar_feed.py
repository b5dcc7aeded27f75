"""The ICS feed (issue 18, point 8): a secret, rotatable URL that Thunderbird and Apple Calendar
subscribe to; parsed back with icalendar and expanded with recurring-ical-events."""
from __future__ import annotations

import datetime as dt

import icalendar
import recurring_ical_events

from tests.api.test_calendar_events import _agent


def test_the_feed_parses_expands_refuses_a_wrong_key_and_dies_on_rotation(world, store, client):
    _, agent = _agent(world, store)
    cal_id = client.get("/v1/calendar/calendars/", headers=agent.auth).json["results"][0]["calendar_id"]
    series = client.post("/v1/calendar/events/", headers=agent.auth, json={
        "calendar_id": cal_id, "title": "Standup", "start": "2026-03-16T09:00:00", "duration": "PT30M",
        "time_zone": "Europe/Berlin", "recurrence": "FREQ=WEEKLY;COUNT=4"}).json
    client.patch(f"/v1/calendar/events/{series['event_id']}/", headers=agent.auth,
                 json={"occurrence_start": "2026-03-30T09:00:00+02:00", "start": "2026-03-30T10:00:00"})
    client.delete(f"/v1/calendar/events/{series['event_id']}/?occurrence_start=2026-03-23T09:00:00%2B01:00",
                  headers=agent.auth)
    client.post("/v1/calendar/events/", headers=agent.auth, json={
        "calendar_id": cal_id, "title": "Holiday", "start": "2026-04-03", "all_day": True})

    assert client.get(f"/v1/calendar/calendars/{cal_id}/feed.ics?key=nothing-yet").status_code == 404
    key = client.post(f"/v1/calendar/calendars/{cal_id}/feed-key/", headers=agent.auth)
    assert key.status_code == 200, key.json
    url = key.json["feed_url"]
    resp = client.get(url)  # public: no token
    assert resp.status_code == 200 and resp.mimetype == "text/calendar"
    cal = icalendar.Calendar.from_ical(resp.data)
    assert {str(c["UID"]) for c in cal.walk("VEVENT")} and cal.walk("VTIMEZONE")
    found = [(o["SUMMARY"], o["DTSTART"].dt) for o in recurring_ical_events.of(cal).between(
        dt.date(2026, 3, 1), dt.date(2026, 5, 1))]
    berlin = dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=2))
    assert sorted((str(s), v.isoformat()) for s, v in found) == [
        ("Holiday", "2026-04-03"),
        ("Standup", dt.datetime(2026, 3, 16, 9, tzinfo=berlin[0]).isoformat()),
        ("Standup", dt.datetime(2026, 3, 30, 10, tzinfo=berlin[1]).isoformat()),
        ("Standup", dt.datetime(2026, 4, 6, 9, tzinfo=berlin[1]).isoformat()),
    ]

    wrong = client.get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
    assert wrong.status_code == 404 and wrong.json["error"]["code"] == "not_found"
    rotated = client.post(f"/v1/calendar/calendars/{cal_id}/feed-key/", headers=agent.auth).json
    assert client.get(url).status_code == 404
    assert client.get(rotated["feed_url"]).status_code == 200
    listed = client.get("/v1/calendar/calendars/", headers=agent.auth).json["results"]
    assert [c["feed_enabled"] for c in listed if c["calendar_id"] == cal_id] == [True]
