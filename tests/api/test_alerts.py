"""Issue 15, alerts API (contract section 8): CRUD, validation, the secret shown once, rotation
with two live secrets for 24 h, test deliveries and redelivery, and tenant and inbox isolation.
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from appliance import clock
from appliance.models import Alert, Event, Task, WebhookDelivery
from appliance.services.automation import alerts
from appliance.services.automation.event_types import REGISTRY, EventType
from tests.helpers import assert_error, where_stored

PUBLIC_TARGET = "https://93.184.215.14/hooks/gentbox"  # an IP literal: public, no DNS needed


def _create(client, auth, inbox_id=None, **fields):
    body = {"events": ["message.received"], "delivery": {"type": "webhook", "target": PUBLIC_TARGET}, **fields}
    if inbox_id:
        body["inbox_id"] = inbox_id
    return client.post("/v1/alerts/", json=body, headers=auth)


@pytest.fixture
def box(world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["alerts:read", "alerts:write"])
    return owner, inbox_id, agent


def test_create_list_get_update_delete(client, box):
    owner, inbox_id, agent = box
    made = _create(client, agent.auth, filter={"from": "boss@example.com"}, retries=5, backoff="fixed")
    assert made.status_code == 201, made.json
    alert = made.json
    assert alert["alert_id"].startswith("alr_") and alert["inbox_id"] == inbox_id
    assert alert["secret"].startswith("whsec_") and len(base64.b64decode(alert["secret"][6:])) == 32
    assert alert["delivery"] == {"type": "webhook", "target": PUBLIC_TARGET}
    assert (alert["retries"], alert["backoff"], alert["enabled"]) == (5, "fixed", True)

    listed = client.get("/v1/alerts/", headers=agent.auth).json
    assert [a["alert_id"] for a in listed["results"]] == [alert["alert_id"]] and listed["cursor"] is None
    assert "secret" not in listed["results"][0]
    one = client.get(f"/v1/alerts/{alert['alert_id']}/", headers=owner.auth).json
    assert "secret" not in one and one["filter"] == {"from": "boss@example.com"}

    changed = client.patch(f"/v1/alerts/{alert['alert_id']}/", json={"events": ["message.sent"], "enabled": False},
                           headers=agent.auth)
    assert changed.status_code == 200, changed.json
    assert changed.json["events"] == ["message.sent"] and changed.json["enabled"] is False
    assert changed.json["disabled_reason"] == "manual" and "secret" not in changed.json
    enabled = client.patch(f"/v1/alerts/{alert['alert_id']}/", json={"enabled": True}, headers=owner.auth)
    assert enabled.json["enabled"] is True and enabled.json["disabled_reason"] is None

    assert client.delete(f"/v1/alerts/{alert['alert_id']}/", headers=agent.auth).status_code == 204
    assert_error(client.get(f"/v1/alerts/{alert['alert_id']}/", headers=agent.auth), 404, "not_found")


def test_changes_are_events_of_the_inbox(client, box, world):
    owner, inbox_id, agent = box
    alert = _create(client, agent.auth).json
    client.patch(f"/v1/alerts/{alert['alert_id']}/", json={"enabled": False}, headers=agent.auth)
    client.post(f"/v1/alerts/{alert['alert_id']}/rotate-secret/", headers=agent.auth)
    client.delete(f"/v1/alerts/{alert['alert_id']}/", headers=agent.auth)
    reader = world.agent(owner, inbox_id, ["email:read"])
    seen = [(e["type"], e["resource_id"]) for e in client.get("/v1/events/", query_string={"types": ",".join(
        ["alert.created", "alert.updated", "alert.disabled", "alert.secret_rotated", "alert.deleted"])},
        headers=reader.auth).json["results"]]
    assert [t for t, _ in seen] == ["alert.created", "alert.disabled", "alert.updated", "alert.secret_rotated",
                                    "alert.deleted"]
    assert {r for _, r in seen} == {alert["alert_id"]}


def test_the_secret_is_shown_once_and_stored_sealed(client, box, store):
    _, _, agent = box
    alert = _create(client, agent.auth).json
    secret = alert["secret"]
    for path in ("/v1/alerts/", f"/v1/alerts/{alert['alert_id']}/", f"/v1/alerts/{alert['alert_id']}/deliveries/"):
        assert secret not in client.get(path, headers=agent.auth).get_data(as_text=True)
    assert where_stored(store, secret) == set()
    assert where_stored(store, secret[6:]) == set()


def test_a_session_names_the_inbox_and_a_task_alert_has_no_secret(client, box):
    owner, inbox_id, _ = box
    assert_error(_create(client, owner.auth), 400, "validation_error", "inbox_id")
    made = _create(client, owner.auth, inbox_id, delivery={"type": "task", "summary": "Reply to {from}"})
    assert made.status_code == 201, made.json
    assert made.json["delivery"] == {"type": "task", "summary": "Reply to {from}"} and "secret" not in made.json
    assert_error(client.post(f"/v1/alerts/{made.json['alert_id']}/rotate-secret/", headers=owner.auth),
                 400, "validation_error")
    # Made a webhook later: the secret appears in that answer, once.
    patched = client.patch(f"/v1/alerts/{made.json['alert_id']}/",
                           json={"delivery": {"type": "webhook", "target": PUBLIC_TARGET}}, headers=owner.auth)
    assert patched.status_code == 200 and patched.json["secret"].startswith("whsec_")


@pytest.mark.parametrize("body, field", [
    ({"events": ["message.nonsense"]}, "events[0]"),
    ({"events": []}, "events"),
    ({"events": ["domain.verified"]}, "events[0]"),  # admin-only: not for an agent
    ({"retries": 11}, "retries"),
    ({"backoff": "sometimes"}, "backoff"),
    ({"offset": {"value": 10, "unit": "minutes"}}, "offset"),  # message.received takes no offset
    ({"threshold": 80}, "threshold"),
    ({"delivery": {"type": "task"}}, "delivery.summary"),
    ({"filter": {"from": {"nested": 1}}}, None),
])
def test_invalid_alerts_are_refused(client, box, body, field):
    _, _, agent = box
    err = assert_error(_create(client, agent.auth, **body), 400, "validation_error")
    if field:
        assert err["field"] == field


def test_owners_may_subscribe_to_admin_types(client, box):
    owner, inbox_id, _ = box
    assert _create(client, owner.auth, inbox_id, events=["domain.verified"]).status_code == 201


@pytest.mark.parametrize("target", [
    "http://93.184.215.14/hooks", "https://127.0.0.1/hooks", "https://10.1.2.3/", "https://169.254.169.254/latest",
    "https://[::1]:8443/", "https://[::ffff:10.0.0.1]/", "https://100.64.0.1/", "ftp://93.184.215.14/",
    "https:///nohost", "https://93.184.215.14:99999/"])
def test_private_and_plain_http_targets_are_refused(client, box, target):
    _, _, agent = box
    err = assert_error(_create(client, agent.auth, delivery={"type": "webhook", "target": target}),
                       400, "webhook_target_forbidden", "delivery.target")
    assert "webhook_allow_private" in err["fix"]


def test_names_are_resolved_and_every_address_must_be_public(make_settings, make_app, world_for, dns_server):
    dns_server.publish("hooks.example", "A", "93.184.215.14", restart=False)
    dns_server.publish("lan.example", "A", "93.184.215.14", restart=False)
    dns_server.publish("lan.example", "AAAA", "fd00::1", restart=False)
    dns_server.publish("inside.example", "A", "192.168.1.20")
    client = make_app(make_settings(dns_servers=dns_server.address)).test_client()
    world = world_for(client)
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["alerts:write"])
    ok = _create(client, agent.auth, delivery={"type": "webhook", "target": "https://hooks.example/in"})
    assert ok.status_code == 201, ok.json
    for name in ("lan.example", "inside.example", "nowhere.example"):
        resp = _create(client, agent.auth, delivery={"type": "webhook", "target": f"https://{name}/in"})
        assert_error(resp, 400, "webhook_target_forbidden", "delivery.target")
    # PATCHing a target checks it too.
    resp = client.patch(f"/v1/alerts/{ok.json['alert_id']}/",
                        json={"delivery": {"target": "https://inside.example/"}}, headers=agent.auth)
    assert_error(resp, 400, "webhook_target_forbidden")


def test_webhook_allow_private_lets_lan_and_http_targets_in(make_settings, make_app, world_for):
    client = make_app(make_settings(webhook_allow_private=True)).test_client()
    world = world_for(client)
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["alerts:write"])
    for target in ("http://127.0.0.1:8080/hook", "https://10.1.2.3/", "http://lan-receiver.local/in"):
        resp = _create(client, agent.auth, delivery={"type": "webhook", "target": target})
        assert resp.status_code == 201, resp.json
    assert_error(_create(client, agent.auth, delivery={"type": "webhook", "target": "ftp://10.1.2.3/"}),
                 400, "webhook_target_forbidden")


def _signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    mac = hmac.new(alerts.secret_key_bytes(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_rotation_keeps_both_secrets_live_for_24_hours(client, box, store, settings):
    _, _, agent = box
    alert = _create(client, agent.auth).json
    rotated = client.post(f"/v1/alerts/{alert['alert_id']}/rotate-secret/", headers=agent.auth)
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["secret"]
    assert new.startswith("whsec_") and new != alert["secret"] and rotated.json["previous_valid_until"]
    assert new not in client.get(f"/v1/alerts/{alert['alert_id']}/", headers=agent.auth).get_data(as_text=True)

    def live() -> list[str]:
        with store.session() as db:
            return alerts.live_secrets(settings, db.get(Alert, alert["alert_id"]))
    assert live() == [new, alert["secret"]]
    # A receiver holding either secret verifies a delivery signed with both (Standard Webhooks).
    body, ts = '{"type":"webhook.test"}', int(clock.utcnow().timestamp())
    header = " ".join(_signature(s, "msg_1", ts, body) for s in live())
    for secret in (new, alert["secret"]):
        Webhook(secret).verify(body, {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": header})
    clock.advance(dt.timedelta(hours=23, minutes=59))
    assert live() == [new, alert["secret"]]
    clock.advance(dt.timedelta(minutes=2))
    assert live() == [new]


def test_test_queues_one_delivery_and_retry_makes_it_due(client, box, store):
    owner, inbox_id, agent = box
    alert = _create(client, agent.auth).json
    queued = client.post(f"/v1/alerts/{alert['alert_id']}/test/", headers=agent.auth)
    assert queued.status_code == 202, queued.json
    delivery = queued.json
    assert delivery["status"] == "pending" and delivery["attempt"] == 0
    assert delivery["webhook_id"] == f"msg_{delivery['event_id']}_{alert['alert_id']}"
    listed = client.get(f"/v1/alerts/{alert['alert_id']}/deliveries/", headers=agent.auth).json
    assert [d["delivery_id"] for d in listed["results"]] == [delivery["delivery_id"]]
    assert client.get(f"/v1/alerts/{alert['alert_id']}/deliveries/", query_string={"status": "failed"},
                      headers=agent.auth).json["results"] == []
    later = clock.utcnow() + dt.timedelta(hours=2)
    with store.session() as db:  # as the engine leaves a failed attempt
        row = db.get(WebhookDelivery, delivery["delivery_id"])
        row.status, row.attempt, row.response_status, row.error, row.next_attempt_at = \
            "failed", 1, 500, "HTTP 500", later
        db.commit()
    retried = client.post(f"/v1/alerts/{alert['alert_id']}/deliveries/{delivery['delivery_id']}/retry/",
                          headers=owner.auth)
    assert retried.status_code == 202, retried.json
    assert retried.json["status"] == "pending" and retried.json["next_attempt_at"] < later.isoformat()
    assert retried.json["webhook_id"] == delivery["webhook_id"]
    # The test event is a webhook.test event of the inbox, naming the alert.
    with store.session() as db:
        assert db.scalar(select(WebhookDelivery.event_id)) == delivery["event_id"]


def test_deliveries_page_newest_first(client, box):
    _, _, agent = box
    alert = _create(client, agent.auth).json
    made = [client.post(f"/v1/alerts/{alert['alert_id']}/test/", headers=agent.auth).json["delivery_id"]
            for _ in range(3)]
    first = client.get(f"/v1/alerts/{alert['alert_id']}/deliveries/", query_string={"limit": 2},
                       headers=agent.auth).json
    second = client.get(f"/v1/alerts/{alert['alert_id']}/deliveries/",
                        query_string={"limit": 2, "cursor": first["cursor"]}, headers=agent.auth).json
    assert [d["delivery_id"] for d in first["results"] + second["results"]] == made[::-1]
    assert second["cursor"] is None


def test_other_tenants_and_other_inboxes_get_404(client, box, world):
    owner, inbox_id, agent = box
    alert = _create(client, agent.auth).json
    delivery = client.post(f"/v1/alerts/{alert['alert_id']}/test/", headers=agent.auth).json
    stranger = world.owner()
    strangers_agent = world.agent(stranger, world.inbox(stranger), ["alerts:read", "alerts:write"])
    neighbour = world.agent(owner, world.inbox(owner), ["alerts:read", "alerts:write"])  # same tenant
    base = f"/v1/alerts/{alert['alert_id']}"
    calls = [("GET", f"{base}/"), ("PATCH", f"{base}/"), ("DELETE", f"{base}/"), ("POST", f"{base}/rotate-secret/"),
             ("POST", f"{base}/test/"), ("GET", f"{base}/deliveries/"),
             ("POST", f"{base}/deliveries/{delivery['delivery_id']}/retry/")]
    for auth in (stranger.auth, strangers_agent.auth, neighbour.auth):
        for method, path in calls:
            body = {"enabled": False} if method == "PATCH" else None
            assert_error(client.open(path, method=method, json=body, headers=auth), 404, "not_found")
        assert client.get("/v1/alerts/", headers=auth).json["results"] == []
    # A session naming another tenant's inbox is 404 too; the owner still sees it all.
    assert_error(client.get("/v1/alerts/", query_string={"inbox_id": inbox_id}, headers=stranger.auth),
                 404, "not_found")
    assert client.get(f"{base}/", headers=owner.auth).json["enabled"] is True
    # A delivery id of another alert is not found through this one.
    other = _create(client, agent.auth).json
    assert_error(client.post(f"/v1/alerts/{other['alert_id']}/deliveries/{delivery['delivery_id']}/retry/",
                             headers=agent.auth), 404, "not_found")


def test_a_member_sees_only_granted_inboxes_alerts(client, box, world):
    owner, inbox_id, agent = box
    alert = _create(client, agent.auth).json
    member = world.member(owner)
    assert_error(client.get(f"/v1/alerts/{alert['alert_id']}/", headers=member.auth), 404, "not_found")
    client.put(f"/v1/inboxes/{inbox_id}/members/", json={"user_ids": [member.user_id]}, headers=owner.auth)
    assert client.get(f"/v1/alerts/{alert['alert_id']}/", headers=member.auth).status_code == 200


def test_offsets_follow_the_registry(client, box, monkeypatch):
    _, _, agent = box
    monkeypatch.setitem(REGISTRY, "message.received", EventType(
        "message.received", "messages", "as a scheduled type", offset_units=("minutes", "hours")))
    made = _create(client, agent.auth, offset={"value": 30, "unit": "minutes"})
    assert made.status_code == 201 and made.json["offset"] == {"value": 30, "unit": "minutes"}
    assert_error(_create(client, agent.auth, offset={"value": 2, "unit": "days"}), 400, "validation_error", "offset")


def test_a_task_alert_makes_one_task_per_event(client, box, store):
    owner, inbox_id, agent = box
    made = _create(client, agent.auth, delivery={"type": "task", "summary": "Answer {subject}"}).json
    with store.session() as db:
        alert = db.get(Alert, made["alert_id"])
        event = Event(id="evt_01J00000000000000000000001", tenant_id=alert.tenant_id, inbox_id=inbox_id,
                      type="message.received", resource_id="msg_1", payload={"subject": "the invoice"})
        first = alerts.deliver_task(db, alert, event)
        again = alerts.deliver_task(db, alert, event)
        db.commit()
        assert first is not None and again is None
        tasks = db.scalars(select(Task)).all()
    assert [(t.summary, t.status, t.inbox_id, t.source_event_id) for t in tasks] == [
        ("Answer the invoice", "needs_action", inbox_id, event.id)]
