"""Contract section 3a (issue 27): GET/PATCH /v1/settings/ and /v1/inboxes/{id}/settings/
through the real Flask app, on SQLite and PostgreSQL: defaults shown, typed validation naming
the field, nothing half-written, settings.updated naming the keys, and who may read and change."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from appliance import clock
from appliance.models import Event, Inbox, Tenant
from tests.helpers import assert_error


@pytest.fixture
def owner(world):
    return world.owner()


@pytest.fixture
def inbox_id(world, owner):
    return world.inbox(owner, "desk@settings.test")


def _settings_of(store, inbox_id: str) -> tuple[dict, str, str | None]:
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        return dict(inbox.settings or {}), inbox.display_name, inbox.default_timezone


def _events(store) -> list[Event]:
    with store.session() as db:
        return list(db.scalars(select(Event).where(Event.type == "settings.updated").order_by(Event.seq)))


def test_get_shows_every_default(client, owner, inbox_id) -> None:
    body = client.get(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth).json
    assert body == {"inbox_id": inbox_id, "display_name": "Agent", "default_timezone": "UTC",
                    "signature_text": "", "signature_html": "", "auto_contacts": True, "webhook_events": [],
                    "auto_reply": {"enabled": False, "subject": "", "text_body": "", "until": None},
                    "enrichment": {"model": "builtin", "enabled_features": ["phishing_detection", "next_step",
                                                                            "contact_digest", "thread_digest"],
                                   "budget_limit": None},
                    "phishing_thresholds": {"suspicious": 4.0, "phishing": 7.0}}
    tenant = client.get("/v1/settings/", headers=owner.auth).json
    assert tenant["default_timezone"] == "UTC" and tenant["llm_consent"] is False
    assert tenant["notify_address"] is None and tenant["default_inbox_settings"] == {}


def test_patch_writes_row_columns_json_keys_and_one_event(client, store, owner, inbox_id) -> None:
    resp = client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth, json={
        "display_name": "Front Desk", "default_timezone": "Europe/Berlin", "signature_text": "Ann\nFront Desk",
        "auto_reply": {"enabled": True, "text_body": "Away until Monday.",
                       "until": "2099-01-05T09:00:00"}})
    assert resp.status_code == 200, resp.json
    assert resp.json["auto_reply"] == {"enabled": True, "subject": "", "text_body": "Away until Monday.",
                                       "until": "2099-01-05T08:00:00+00:00"}  # read in Europe/Berlin
    stored, name, zone = _settings_of(store, inbox_id)
    assert (name, zone) == ("Front Desk", "Europe/Berlin")
    assert set(stored) == {"signature_text", "auto_reply"}  # only the keys set
    [event] = _events(store)
    assert event.inbox_id == inbox_id
    assert event.payload == {"scope": "inbox", "changed": ["auto_reply", "default_timezone", "display_name",
                                                           "signature_text"]}
    assert "Away" not in str(event.payload)  # names only, never values
    # null goes back to the default; a PATCH that changes nothing emits nothing
    client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth, json={"signature_text": None})
    client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth, json={"signature_text": None})
    assert "signature_text" not in _settings_of(store, inbox_id)[0]
    assert [e.payload["changed"] for e in _events(store)][1:] == [["signature_text"]]


@pytest.mark.parametrize("body, field", [
    ({"signature_text": "Ann", "colour": "red"}, "colour"),
    ({"signature_text": "Ann", "default_timezone": "Mars/Olympus_Mons"}, "default_timezone"),
    ({"signature_text": "Ann", "auto_reply": {"enabled": True, "until": "2001-01-01T00:00:00Z"}}, "auto_reply.until"),
    ({"signature_text": "Ann", "auto_reply": {"enabled": True, "until": "next blue moon"}}, "auto_reply.until"),
    ({"signature_text": "Ann", "auto_reply": {"until": "9999-12-31T23:59:59-05:00"}}, "auto_reply.until"),
    ({"signature_text": "Ann", "auto_reply": {"enabled": True, "mood": "sunny"}}, "auto_reply.mood"),
    ({"signature_text": "Ann", "webhook_events": ["message.received", "no.such"]}, "webhook_events[1]"),
    ({"signature_text": "Ann", "auto_contacts": "yes"}, "auto_contacts"),
])
def test_a_bad_field_is_named_and_nothing_is_written(client, store, owner, inbox_id, body, field) -> None:
    before = _settings_of(store, inbox_id)
    resp = client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth, json=body)
    code = "invalid_time" if "moon" in str(body) else "validation_error"
    assert_error(resp, 400, code, field=field)
    assert _settings_of(store, inbox_id) == before
    assert _events(store) == []


def test_until_takes_the_time_inputs_phrases(client, owner, inbox_id) -> None:
    resp = client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth,
                        json={"auto_reply": {"enabled": True, "until": "in 2 weeks"}})
    until = dt.datetime.fromisoformat(resp.json["auto_reply"]["until"])
    assert dt.timedelta(days=13) < until - clock.utcnow() <= dt.timedelta(days=14)


def test_an_until_in_the_past_is_refused_by_the_injected_clock(client, owner, inbox_id) -> None:
    soon = (clock.utcnow() + dt.timedelta(minutes=1)).isoformat()
    clock.advance(dt.timedelta(minutes=2))
    resp = client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth,
                        json={"auto_reply": {"enabled": True, "until": soon}})
    assert_error(resp, 400, "validation_error", field="auto_reply.until")


def test_signature_html_is_sanitised_like_mail(client, store, owner, inbox_id) -> None:
    resp = client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth, json={
        "signature_html": '<p onclick="steal()">Ann <b>Desk</b></p><script>alert(1)</script>'
                          '<a href="javascript:alert(2)">x</a>'})
    assert resp.status_code == 200, resp.json
    stored = _settings_of(store, inbox_id)[0]["signature_html"]
    for bad in ("<script", "alert(1)", "onclick", "javascript:"):
        assert bad not in stored and bad not in resp.json["signature_html"]
    assert "<b>Desk</b>" in stored


def test_an_agent_reads_its_own_inbox_only_and_changes_nothing(client, world, owner, inbox_id) -> None:
    agent = world.agent(owner, inbox_id, ["email:read"])
    other = world.inbox(owner, "other@settings.test")
    assert client.get(f"/v1/inboxes/{inbox_id}/settings/", headers=agent.auth).status_code == 200
    assert_error(client.patch(f"/v1/inboxes/{inbox_id}/settings/", headers=agent.auth,
                              json={"signature_text": "x"}), 403, "session_required")
    assert_error(client.get(f"/v1/inboxes/{other}/settings/", headers=agent.auth), 404, "not_found")
    stranger = world.owner()
    assert_error(client.get(f"/v1/inboxes/{inbox_id}/settings/", headers=stranger.auth), 404, "not_found")


def test_tenant_settings_owner_changes_members_read(client, world, store, owner) -> None:
    resp = client.patch("/v1/settings/", headers=owner.auth, json={
        "name": "Acme Desk", "default_timezone": "America/New_York", "llm_consent": True,
        "notify_address": "Ops@Example.com", "default_inbox_settings": {"signature_text": "The Acme team"}})
    assert resp.status_code == 200, resp.json
    assert resp.json["notify_address"] == "ops@example.com" and resp.json["llm_consent"] is True
    with store.session() as db:
        tenant = db.get(Tenant, owner.tenant_id)
        assert tenant.name == "Acme Desk" and tenant.settings["default_timezone"] == "America/New_York"
    member = world.member(owner)
    assert client.get("/v1/settings/", headers=member.auth).json["name"] == "Acme Desk"
    assert_error(client.patch("/v1/settings/", headers=member.auth, json={"llm_consent": False}), 403, "forbidden")
    # a new inbox inherits the tenant's defaults (its zone, its signature)
    inbox_id = world.inbox(owner, "new@settings.test")
    inbox = client.get(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth).json
    assert inbox["default_timezone"] == "America/New_York" and inbox["signature_text"] == "The Acme team"
    [event] = _events(store)
    assert event.inbox_id is None and event.payload["scope"] == "tenant"


@pytest.mark.parametrize("body, field", [
    ({"llm_consent": True, "default_timezone": "Nowhere/Land"}, "default_timezone"),
    ({"llm_consent": True, "notify_address": "not an address"}, "notify_address"),
    ({"llm_consent": True, "default_inbox_settings": {"auto_reply": {"until": "1999-01-01T00:00:00Z"}}},
     "default_inbox_settings.auto_reply.until"),
    ({"llm_consent": True, "secret_mode": True}, "secret_mode"),
])
def test_tenant_patch_is_all_or_nothing(client, store, owner, body, field) -> None:
    assert_error(client.patch("/v1/settings/", headers=owner.auth, json=body), 400, "validation_error", field=field)
    with store.session() as db:
        assert db.get(Tenant, owner.tenant_id).settings == {}
    assert client.get("/v1/settings/", headers=owner.auth).json["llm_consent"] is False
