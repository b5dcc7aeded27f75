"""Issue 15: which events an alert takes (`alerts.matches`) and the task summary template, the
rules the delivery engine shares with the API."""
from __future__ import annotations

from appliance.models import Alert, Event
from appliance.services.automation import alerts


def _alert(**fields) -> Alert:
    base = dict(id="alr_A", tenant_id="ten_1", inbox_id="inb_1", events=["message.received"], filter={})
    return Alert(**{**base, **fields})


def _event(**fields) -> Event:
    base = dict(id="evt_1", tenant_id="ten_1", inbox_id="inb_1", type="message.received", resource_id="msg_1",
                payload={"from": "ann@example.org", "subject": "Hi", "count": 3})
    return Event(**{**base, **fields})


def test_type_tenant_and_inbox_must_match():
    assert alerts.matches(_alert(), _event())
    assert not alerts.matches(_alert(), _event(type="message.sent"))
    assert not alerts.matches(_alert(), _event(tenant_id="ten_2"))
    assert not alerts.matches(_alert(), _event(inbox_id="inb_2"))
    # Tenant-wide events (no inbox) reach an inbox's alert only for admin-only types.
    assert not alerts.matches(_alert(), _event(inbox_id=None))
    assert alerts.matches(_alert(events=["domain.verified"]), _event(type="domain.verified", inbox_id=None))


def test_every_filter_field_must_equal_the_payloads():
    assert alerts.matches(_alert(filter={"from": "ann@example.org", "count": 3}), _event())
    assert not alerts.matches(_alert(filter={"from": "bob@example.org"}), _event())
    assert not alerts.matches(_alert(filter={"missing": None}), _event())
    assert not alerts.matches(_alert(filter={"count": "3"}), _event())


def test_a_test_event_goes_only_to_the_alert_it_names():
    test = _event(type="webhook.test", resource_id="alr_A", payload={"alert_id": "alr_A"})
    assert alerts.matches(_alert(events=["webhook.test"]), test)
    assert not alerts.matches(_alert(id="alr_B", events=["webhook.test"]), test)


def test_task_summaries_fill_fields_and_never_reach_attributes():
    event = _event()
    assert alerts.render_task_summary("Reply to {from}: {subject} ({type})", event) == \
        "Reply to ann@example.org: Hi (message.received)"
    assert alerts.render_task_summary("{unknown} {from.__class__} {0}", event) == "{unknown} {from.__class__} {0}"


def test_secrets_are_standard_webhooks_secrets():
    secret = alerts.new_secret()
    assert secret.startswith("whsec_") and len(alerts.secret_key_bytes(secret)) == 32
    assert alerts.new_secret() != secret
