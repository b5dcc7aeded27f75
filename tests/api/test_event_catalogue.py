"""Issue 15, the event catalogue (contract section 8): public, generated from the registry, with
admin-only types for owners and admins signed in with a session only."""
from __future__ import annotations

from appliance.services.automation.event_types import CATEGORIES, REGISTRY

ADMIN = {t for t, e in REGISTRY.items() if e.admin}


def test_types_in_the_contracts_shape_without_admin_types_for_the_public(client):
    resp = client.get("/v1/events/types/")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert set(body) == {"resource", "events", "categories", "counts"} and body["resource"] == "event_types"
    types = {e["type"] for e in body["events"]}
    assert types == set(REGISTRY) - ADMIN and ADMIN
    assert {"alert.created", "alert.disabled", "webhook.test", "message.received"} <= types
    entry = next(e for e in body["events"] if e["type"] == "message.received")
    assert entry == {"type": "message.received", "category": "messages", "description": REGISTRY[
        "message.received"].description, "config": {}, "offset_units": [], "admin": False}
    assert body["counts"] == {"events": len(types), "categories": len(body["categories"])}
    assert {c["category"] for c in body["categories"]} == {REGISTRY[t].category for t in types}
    assert all(c["description"] == CATEGORIES[c["category"]] for c in body["categories"])
    assert sum(c["count"] for c in body["categories"]) == len(types)


def test_reference_in_the_contracts_shape(client):
    body = client.get("/v1/events/reference/").json
    assert set(body) == {"version", "resource", "payload", "fields", "builder", "events", "categories"}
    assert body["resource"] == "events" and set(body["payload"]) >= {"list_events", "subscribe_alert"}
    assert body["builder"] == {"group_field": "category", "value_field": "type"}
    assert {f["name"] for f in body["fields"]} >= {"event_id", "seq", "type", "category", "payload", "actor"}
    assert {e["type"] for e in body["events"]} == set(REGISTRY) - ADMIN


def test_owners_and_admins_see_admin_types_members_and_agents_do_not(client, world):
    owner = world.owner()
    admin, member = world.member(owner, "admin"), world.member(owner, "member")
    agent = world.agent(owner, world.inbox(owner), ["email:read", "alerts:read"])
    for path in ("/v1/events/types/", "/v1/events/reference/"):
        for person in (owner, admin):
            assert {e["type"] for e in client.get(path, headers=person.auth).json["events"]} == set(REGISTRY)
        for caller in (member, agent):
            assert {e["type"] for e in client.get(path, headers=caller.auth).json["events"]} == \
                set(REGISTRY) - ADMIN
