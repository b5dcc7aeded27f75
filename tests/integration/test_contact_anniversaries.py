"""Anniversaries (issue 17 point 4): `contact.<type>` once a year at 09:00 in the inbox's zone,
through the schedule (appliance/services/automation/schedule.py); 29 February falls on 28 February
in other years. The clock is injected: the worker's call is schedule.fire_due(store.session, now)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from appliance import clock
from appliance.models import Event, Schedule
from appliance.services.automation import schedule

UTC = dt.timezone.utc
NOW = dt.datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
DUE = dt.datetime(2027, 2, 28, 14, 0, tzinfo=UTC)  # 09:00 in New York (EST, UTC-5)


def _setup(client, world):  # noqa: ANN001, ANN202
    clock.advance(NOW - clock.utcnow())
    owner = world.owner()
    inbox_id = world.inbox(owner)
    zoned = client.patch(f"/v1/inboxes/{inbox_id}/", json={"default_timezone": "America/New_York"}, headers=owner.auth)
    assert zoned.status_code == 200, zoned.get_json()
    return world.agent(owner, inbox_id, ["contacts:read", "contacts:write"])


def _fired(store, type_: str) -> list[Event]:
    with store.session() as db:
        return list(db.scalars(select(Event).where(Event.type == type_).order_by(Event.seq)))


def test_a_29_february_birthday_fires_on_28_february_2027_at_nine_in_the_inbox_zone_once(client, world, store):
    agent = _setup(client, world)
    made = client.post("/v1/contacts/", json={"full_name": "Leap Day", "anniversaries": [
        {"type": "birthday", "date": "1996-02-29"}]}, headers=agent.auth)
    assert made.status_code == 201, made.get_json()
    contact_id = made.get_json()["contact_id"]
    with store.session() as db:
        row = db.scalar(select(Schedule).where(Schedule.key == f"anniversary:{contact_id}:birthday"))
        assert row.due_at == DUE and row.event_type == "contact.birthday" and row.inbox_id == agent.inbox_id
    assert schedule.fire_due(store.session, DUE - dt.timedelta(minutes=1)) == 0
    assert schedule.fire_due(store.session, DUE) == 1
    assert schedule.fire_due(store.session, DUE) == 0
    assert schedule.fire_due(store.session, dt.datetime(2027, 12, 31, tzinfo=UTC)) == 0
    [event] = _fired(store, "contact.birthday")
    assert (event.inbox_id, event.resource_id) == (agent.inbox_id, contact_id)
    assert event.payload["due_at"] == DUE.isoformat() and event.payload["date"] == "1996-02-29"
    with store.session() as db:  # re-armed: 29 February again in 2028, a leap year
        assert db.scalar(select(Schedule.due_at).where(Schedule.resource_id == contact_id)) == \
            dt.datetime(2028, 2, 29, 14, 0, tzinfo=UTC)
    assert schedule.fire_due(store.session, dt.datetime(2028, 2, 29, 14, 0, tzinfo=UTC)) == 1
    assert len(_fired(store, "contact.birthday")) == 2


def test_other_dates_get_their_types_and_a_deleted_contact_fires_nothing(client, world, store):
    agent = _setup(client, world)
    made = client.post("/v1/contacts/", json={"full_name": "Many Dates", "anniversaries": [
        {"type": "nameday", "date": "--01-20"}, {"type": "wedding", "date": "2015-06-01"}]}, headers=agent.auth)
    contact_id = made.get_json()["contact_id"]
    with store.session() as db:
        rows = {r.key: (r.event_type, r.due_at) for r in db.scalars(select(Schedule).where(Schedule.resource_id == contact_id))}
    assert rows == {f"anniversary:{contact_id}:nameday": ("contact.nameday", dt.datetime(2027, 1, 20, 14, tzinfo=UTC)),
                    f"anniversary:{contact_id}:wedding": ("contact.anniversary", dt.datetime(2027, 6, 1, 13, tzinfo=UTC))}
    # Editing the dates re-plans them; deleting the contact forgets them.
    client.patch(f"/v1/contacts/{contact_id}/", json={"anniversaries": [{"type": "nameday", "date": "--01-21"}]},
                 headers=agent.auth)
    with store.session() as db:
        assert [r.key for r in db.scalars(select(Schedule).where(Schedule.resource_id == contact_id))] == \
            [f"anniversary:{contact_id}:nameday"]
    assert client.delete(f"/v1/contacts/{contact_id}/", headers=agent.auth).status_code == 204
    assert schedule.fire_due(store.session, dt.datetime(2028, 1, 1, tzinfo=UTC)) == 0
    assert _fired(store, "contact.nameday") == []
