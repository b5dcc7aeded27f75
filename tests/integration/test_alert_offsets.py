"""Alert offsets (issue 15, point 2): a scheduled event reaches an alert with an `offset` that
long before it is due, once; an alert without one gets the event when the worker's scheduler
fires it; a yearly row re-armed by its source does both again the next year. Real receivers on
loopback; time moves on the injected clock."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from appliance import clock
from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.models import Event, Schedule, Task, WebhookDelivery
from appliance.services.automation import alerts, schedule
from appliance.worker import Worker
from tests.integration.webhook_receiver import Receiver, make_alert

YEARLY = "test_offsets_yearly"
schedule.register_next(YEARLY, lambda db, row: row.due_at.replace(year=row.due_at.year + 1))


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def factory() -> Receiver:
        receiver = Receiver([])
        made.append(receiver)
        return receiver
    yield factory
    for receiver in made:
        receiver.stop()


def _alert(store, settings, owner, inbox_id, receiver, *, offset=None, **kwargs):  # noqa: ANN001, ANN202
    with store.session() as db:
        alert, secret = make_alert(db, settings, tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                   target=receiver.url if receiver else None, events=["contact.birthday"], **kwargs)
        if offset:
            alert.offset_value, alert.offset_unit = offset
        if receiver:
            receiver.secrets.append(secret)
        return alert.id


def _plan(store, owner, inbox_id, due: dt.datetime) -> None:  # noqa: ANN001
    with store.session() as db:
        schedule.plan(db, tenant_id=owner.tenant_id, inbox_id=inbox_id, key=f"test:birthday:{inbox_id}",
                      source=YEARLY, event_type="contact.birthday", due_at=due, resource_id="cnt_test",
                      payload={"name": "Ada", "type": "birthday"})


def _bodies(receiver: Receiver) -> list[dict]:
    # Not hit.verified: the signed timestamp is the moved clock's, outside the library's 5 min tolerance.
    return [json.loads(hit.body) for hit in receiver.hits]


def _move_to(when: dt.datetime) -> None:
    clock.advance(when - utcnow())


def test_an_offset_alert_fires_a_day_early_once_the_other_when_due_and_both_next_year(
        world, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    early, on_time = receivers(), receivers()
    early_id = _alert(store, settings, owner, inbox_id, early, offset=(1, "days"))
    _alert(store, settings, owner, inbox_id, on_time)
    due = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    _plan(store, owner, inbox_id, due)
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
        _move_to(due - dt.timedelta(days=1, minutes=1))
        worker.run_until_idle()
        assert (len(early.hits), len(on_time.hits)) == (0, 0)  # a minute before the offset: nothing

        _move_to(due - dt.timedelta(days=1) + dt.timedelta(minutes=1))
        worker.run_until_idle()
        worker.run_until_idle()
        assert (len(early.hits), len(on_time.hits)) == (1, 0)  # a day early, once
        sent = _bodies(early)[0]
        assert sent["type"] == "contact.birthday" and sent["data"]["payload"]["offset"] == {"value": 1, "unit": "days"}
        assert sent["data"]["payload"]["due_at"] == due.isoformat() and sent["data"]["payload"]["name"] == "Ada"
        assert sent["data"]["event_id"].startswith("ofs_") and sent["data"]["resource_id"] == "cnt_test"

        _move_to(due + dt.timedelta(minutes=1))
        worker.run_until_idle()
        worker.run_until_idle()
        assert (len(early.hits), len(on_time.hits)) == (1, 1)  # the firing goes to the other alert only
        with store.session() as db:
            fired = db.scalars(select(Event).where(Event.inbox_id == inbox_id, Event.type == "contact.birthday")).all()
            assert len(fired) == 1 and fired[0].actor_kind == "worker"
            assert _bodies(on_time)[0]["data"]["event_id"] == fired[0].id
            row = db.scalar(select(Schedule).where(Schedule.key == f"test:birthday:{inbox_id}"))
            assert row.fired_at is None and row.due_at == due.replace(year=due.year + 1)

        next_year = due.replace(year=due.year + 1)
        _move_to(next_year - dt.timedelta(hours=23))
        worker.run_until_idle()
        assert (len(early.hits), len(on_time.hits)) == (2, 1)
        assert _bodies(early)[1]["data"]["payload"]["due_at"] == next_year.isoformat()
        assert len({hit.webhook_id for hit in early.hits}) == 2  # a new firing, a new webhook-id
        _move_to(next_year + dt.timedelta(seconds=1))
        worker.run_until_idle()
        assert (len(early.hits), len(on_time.hits)) == (2, 2)
        with store.session() as db:
            statuses = db.scalars(select(WebhookDelivery.status).where(WebhookDelivery.alert_id == early_id)).all()
            assert statuses == ["succeeded", "succeeded"]
    finally:
        worker.close()


def test_a_worker_asleep_through_the_window_still_delivers_each_offset_alert_once(
        world, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    early = receivers()
    _alert(store, settings, owner, inbox_id, early, offset=(2, "hours"))
    task_alert = _alert(store, settings, owner, inbox_id, None, offset=(30, "minutes"), delivery_type="task",
                        task_summary="Congratulate {name}")
    due = (utcnow() + dt.timedelta(days=1)).replace(microsecond=0)
    _plan(store, owner, inbox_id, due)
    _move_to(due + dt.timedelta(minutes=5))  # the engine never ran inside either window
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
        worker.run_until_idle()
    finally:
        worker.close()
    assert len(early.hits) == 1 and _bodies(early)[0]["data"]["payload"]["offset"] == {"value": 2, "unit": "hours"}
    with store.session() as db:
        tasks = db.scalars(select(Task).where(Task.source_alert_id == task_alert)).all()
        assert [t.summary for t in tasks] == ["Congratulate Ada"]


def test_the_anniversary_types_take_an_offset_and_others_do_not() -> None:
    for type_ in ("contact.birthday", "contact.anniversary", "contact.nameday"):
        assert alerts._check_offset([type_], {"value": 1, "unit": "days"}) == (1, "days")
    with pytest.raises(ValidationError):
        alerts._check_offset(["message.received"], {"value": 1, "unit": "days"})
