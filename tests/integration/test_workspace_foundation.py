"""The shared workspace rows (migration 0019): the label registry, the schedule, settings defaults."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from appliance.errors import ValidationError
from appliance.models import Event, Inbox, Label, Schedule, Tenant
from appliance.services.automation import schedule
from appliance.services.identity import settings as settings_service
from appliance.services.mail import labels

T0 = dt.datetime(2027, 2, 28, 8, 0, tzinfo=dt.timezone.utc)


def _inbox(world) -> tuple[str, str]:  # noqa: ANN001
    owner = world.owner()
    return owner.tenant_id, world.inbox(owner)


def test_ensure_creates_missing_labels_once_and_refuses_the_other_kind(world, store):
    tenant_id, inbox_id = _inbox(world)
    with store.session() as db:
        made = labels.ensure(db, tenant_id=tenant_id, inbox_id=inbox_id, names=["vip", "vip", "later"], kind="message")
        assert [label.name for label in made] == ["vip", "later"] and {label.type for label in made} == {"message"}
    with store.session() as db:
        again = labels.ensure(db, tenant_id=tenant_id, inbox_id=inbox_id, names=["later"], kind="message")
        assert again[0].id == made[1].id
        with pytest.raises(ValidationError) as err:
            labels.ensure(db, tenant_id=tenant_id, inbox_id=inbox_id, names=["vip"], kind="contact")
        assert err.value.code == "label_type_mismatch"
    with store.session() as db:
        assert db.scalar(select(Label).where(Label.inbox_id == inbox_id).limit(5)) is not None
        assert len(list(db.scalars(select(Label).where(Label.inbox_id == inbox_id)))) == 2


def test_a_due_row_fires_once_and_a_registered_source_re_arms_it(world, store):
    tenant_id, inbox_id = _inbox(world)
    schedule.register_next("test_yearly", lambda db, row: row.due_at.replace(year=row.due_at.year + 1))
    with store.session() as db:
        schedule.plan(db, tenant_id=tenant_id, inbox_id=inbox_id, key="t:once", source="test_once",
                      event_type="message.updated", due_at=T0, payload={"n": 1})
        schedule.plan(db, tenant_id=tenant_id, inbox_id=inbox_id, key="t:yearly", source="test_yearly",
                      event_type="message.updated", due_at=T0 + dt.timedelta(minutes=30))
    assert schedule.fire_due(store.session, T0 - dt.timedelta(seconds=1)) == 0
    assert schedule.fire_due(store.session, T0 + dt.timedelta(hours=1)) == 2
    assert schedule.fire_due(store.session, T0 + dt.timedelta(hours=2)) == 0  # never twice
    with store.session() as db:
        fired = list(db.scalars(select(Event).where(Event.inbox_id == inbox_id, Event.type == "message.updated")))
        assert len(fired) == 2 and {e.payload.get("due_at") for e in fired} == {
            T0.isoformat(), (T0 + dt.timedelta(minutes=30)).isoformat()}
        yearly = db.scalar(select(Schedule).where(Schedule.key == "t:yearly"))
        assert yearly.fired_at is None and yearly.due_at == T0.replace(year=2028) + dt.timedelta(minutes=30)
        assert schedule.cancel(db, "t:once") and not schedule.cancel(db, "t:once")


def test_settings_lay_the_inbox_over_the_tenant_over_the_defaults(world, store):
    tenant_id, inbox_id = _inbox(world)
    with store.session() as db:
        inbox, tenant = db.get(Inbox, inbox_id), db.get(Tenant, tenant_id)
        assert settings_service.inbox_settings(inbox, tenant)["auto_contacts"] is True
        tenant.settings = {"default_timezone": "Europe/Berlin", "default_inbox_settings": {"auto_contacts": False}}
        inbox.settings = {"signature_text": "-- \nAda"}
    with store.session() as db:
        effective = settings_service.inbox_settings(db.get(Inbox, inbox_id), db.get(Tenant, tenant_id))
        assert effective["auto_contacts"] is False and effective["signature_text"] == "-- \nAda"
        assert effective["default_timezone"] == "Europe/Berlin" and effective["auto_reply"]["enabled"] is False
