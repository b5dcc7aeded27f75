"""Contract section 3 through the API: inboxes on domains verified against a real DNS server.

Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from appliance.models import AgentToken, Domain, Inbox
from tests.helpers import assert_error


# --- helpers -------------------------------------------------------------------------------
def count(world, model, *where) -> int:
    with world.store.session() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where))


def add_domain(client, person, name: str) -> dict:
    resp = client.post("/v1/domains/", json={"domain": name}, headers=person.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def verified_domain(client, dns_server, person, name: str = "example.test") -> dict:
    """Add name, publish its records in the test DNS server and verify it, as an owner would."""
    created = add_domain(client, person, name)
    dns_server.publish_domain_records(name, created["dns_records"])
    answer = client.post(f"/v1/domains/{name}/verify/", headers=person.auth).get_json()
    assert answer["status"] == "verified", answer
    return answer


def create_inbox(client, person, address: str, **extra):
    return client.post("/v1/inboxes/", json={"address": address, **extra}, headers=person.auth)


def created_inbox(client, person, address: str, **extra) -> dict:
    resp = create_inbox(client, person, address, **extra)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.fixture
def dns_client(make_app, make_settings, dns_server):
    return make_app(make_settings(dns_servers=dns_server.address, dns_timeout=2.0)).test_client()


# --- creating ------------------------------------------------------------------------------
def test_an_unverified_domain_is_refused_with_a_fix(dns_client, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    add_domain(dns_client, owner, "example.test")
    err = assert_error(create_inbox(dns_client, owner, "agent@example.test"), 400, "domain_not_verified",
                       field="address")
    assert "/v1/domains/example.test/verify/" in err["fix"]
    # a domain that is not the tenant's: a plain 400 that names the fix, whoever owns it
    err = assert_error(create_inbox(dns_client, owner, "agent@elsewhere.test"), 400, "validation_error")
    assert "POST /v1/domains/" in err["fix"]
    assert count(world, Inbox) == 0


def test_another_tenants_verified_domain_is_not_yours(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    alice, bob = world.owner(), world.owner()
    verified_domain(dns_client, dns_server, alice)
    unknown = assert_error(create_inbox(dns_client, bob, "agent@nowhere.test"), 400, "validation_error")
    theirs = assert_error(create_inbox(dns_client, bob, "agent@example.test"), 400, "validation_error")
    assert theirs["message"].replace("example.test", "X") == unknown["message"].replace("nowhere.test", "X")
    assert count(world, Inbox) == 0


def test_an_inbox_is_created_on_a_verified_domain(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    inbox = created_inbox(dns_client, owner, "  Support.Agent@Example.TEST ", display_name="Support",
                          default_timezone="Europe/Berlin")
    assert inbox["inbox_id"].startswith("inb_")
    assert inbox["address"] == "support.agent@example.test"
    assert (inbox["display_name"], inbox["default_timezone"], inbox["status"]) == ("Support", "Europe/Berlin",
                                                                                    "active")
    assert (inbox["message_count"], inbox["unread_count"]) == (0, 0) and inbox["created_at"]
    assert dns_client.get(f"/v1/inboxes/{inbox['inbox_id']}/", headers=owner.auth).json == inbox
    listed = dns_client.get("/v1/inboxes/", headers=owner.auth).json
    assert listed == {"results": [inbox], "cursor": None}


def test_a_taken_address_in_another_case_conflicts(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    created_inbox(dns_client, owner, "agent@example.test")
    for spelling in ("agent@example.test", "AGENT@example.test", "Agent@EXAMPLE.test"):
        assert_error(create_inbox(dns_client, owner, spelling), 409, "conflict", field="address")
    assert count(world, Inbox) == 1


def test_a_malformed_address_is_refused(client, world):
    owner = world.owner()
    for address in ("not-an-address", "agent@@example.test", "agent@", "@example.test", "agent\r\n@example.test",
                    "agent@exa mple.test", ""):
        assert_error(create_inbox(client, owner, address), 400, "validation_error", field="address")
    assert count(world, Inbox) == 0


def test_reserved_addresses_are_for_the_owner(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    admin = world.member(owner, role="admin")
    verified_domain(dns_client, dns_server, owner)
    for address in ("postmaster@example.test", "abuse@example.test", "Postmaster@Example.Test",
                    "abuse+reports@example.test"):
        err = assert_error(create_inbox(dns_client, admin, address), 403, "forbidden", field="address")
        assert "reserved" in err["message"]
    assert count(world, Inbox) == 0
    assert created_inbox(dns_client, admin, "agent@example.test")["address"] == "agent@example.test"
    assert created_inbox(dns_client, owner, "postmaster@example.test")["address"] == "postmaster@example.test"
    assert created_inbox(dns_client, owner, "Abuse@example.test")["address"] == "abuse@example.test"
    assert count(world, Inbox) == 3


def test_members_may_not_create_inboxes(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    member = world.member(owner)
    verified_domain(dns_client, dns_server, owner)
    assert_error(create_inbox(dns_client, member, "agent@example.test"), 403, "forbidden")
    assert count(world, Inbox) == 0


def test_a_bad_timezone_is_refused(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    for zone in ("Mars/Olympus_Mons", "Europe", "../../etc/passwd", "", "UTC+2"):
        err = assert_error(create_inbox(dns_client, owner, "agent@example.test", default_timezone=zone), 400,
                           "validation_error", field="default_timezone")
        assert err.get("fix")
    assert count(world, Inbox) == 0

    inbox = created_inbox(dns_client, owner, "agent@example.test", default_timezone="America/New_York")
    path = f"/v1/inboxes/{inbox['inbox_id']}/"
    assert_error(dns_client.patch(path, json={"default_timezone": "Nowhere/City"}, headers=owner.auth), 400,
                 "validation_error", field="default_timezone")
    assert dns_client.get(path, headers=owner.auth).json["default_timezone"] == "America/New_York"
    changed = dns_client.patch(path, json={"default_timezone": "Asia/Tokyo"}, headers=owner.auth)
    assert changed.status_code == 200 and changed.json["default_timezone"] == "Asia/Tokyo"


# --- changing ------------------------------------------------------------------------------
def test_an_inbox_is_paused_resumed_and_renamed(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    inbox = created_inbox(dns_client, owner, "agent@example.test", display_name="Agent")
    path = f"/v1/inboxes/{inbox['inbox_id']}/"

    paused = dns_client.patch(path, json={"status": "paused"}, headers=owner.auth)
    assert paused.status_code == 200 and paused.json["status"] == "paused"
    assert dns_client.get(path, headers=owner.auth).json["status"] == "paused"
    with world.store.session() as db:
        assert db.get(Inbox, inbox["inbox_id"]).status == "paused"
    resumed = dns_client.patch(path, json={"status": "active", "display_name": "Agent Smith"}, headers=owner.auth)
    assert resumed.status_code == 200
    assert (resumed.json["status"], resumed.json["display_name"]) == ("active", "Agent Smith")

    for bad in ({"status": "deleted"}, {"status": "off"}, {"address": "other@example.test"},
                {"display_name": "two\nlines"}):
        assert_error(dns_client.patch(path, json=bad, headers=owner.auth), 400, "validation_error")
    assert dns_client.get(path, headers=owner.auth).json == resumed.json


def test_another_tenants_inbox_is_not_found(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    alice, bob = world.owner(), world.owner()
    verified_domain(dns_client, dns_server, alice)
    inbox = created_inbox(dns_client, alice, "agent@example.test")
    path = f"/v1/inboxes/{inbox['inbox_id']}/"
    assert_error(dns_client.get(path, headers=bob.auth), 404, "not_found")
    assert_error(dns_client.patch(path, json={"status": "paused"}, headers=bob.auth), 404, "not_found")
    assert_error(dns_client.delete(path, headers=bob.auth), 404, "not_found")
    assert_error(dns_client.get("/v1/inboxes/inb_doesnotexist/", headers=bob.auth), 404, "not_found")
    assert dns_client.get("/v1/inboxes/", headers=bob.auth).json == {"results": [], "cursor": None}
    assert dns_client.get(path, headers=alice.auth).json == inbox  # untouched


# --- deleting ------------------------------------------------------------------------------
def test_deleting_an_inbox_revokes_its_tokens_and_frees_the_address(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    inbox = created_inbox(dns_client, owner, "agent@example.test")
    other = created_inbox(dns_client, owner, "other@example.test")
    tokens = []
    for inbox_id in (inbox["inbox_id"], other["inbox_id"]):
        resp = dns_client.post("/v1/tokens/", json={"inbox_id": inbox_id, "label": "agent",
                                                    "scopes": ["email:read"]}, headers=owner.auth)
        assert resp.status_code == 201, resp.json
        tokens.append({"Authorization": f"Bearer {resp.json['token']}"})
    assert dns_client.get("/v1/users/me/", headers=tokens[0]).status_code == 200

    path = f"/v1/inboxes/{inbox['inbox_id']}/"
    resp = dns_client.delete(path, headers=owner.auth)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_error(dns_client.get("/v1/users/me/", headers=tokens[0]), 401, "token_revoked")
    assert dns_client.get("/v1/users/me/", headers=tokens[1]).status_code == 200  # other inboxes keep theirs
    assert count(world, AgentToken, AgentToken.inbox_id == inbox["inbox_id"], AgentToken.status != "revoked") == 0
    assert_error(dns_client.get(path, headers=owner.auth), 404, "not_found")
    assert_error(dns_client.delete(path, headers=owner.auth), 404, "not_found")
    assert_error(dns_client.patch(path, json={"status": "active"}, headers=owner.auth), 404, "not_found")
    assert [i["address"] for i in dns_client.get("/v1/inboxes/", headers=owner.auth).json["results"]] == \
        ["other@example.test"]

    again = created_inbox(dns_client, owner, "Agent@example.test")  # the address is free again
    assert again["inbox_id"] != inbox["inbox_id"]
    assert_error(dns_client.get("/v1/users/me/", headers=tokens[0]), 401, "token_revoked")


def test_a_domain_with_active_inboxes_cannot_be_deleted(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    verified_domain(dns_client, dns_server, owner)
    inbox = created_inbox(dns_client, owner, "agent@example.test")
    token = dns_client.post("/v1/tokens/", json={"inbox_id": inbox["inbox_id"], "label": "agent",
                                                 "scopes": ["email:read"]}, headers=owner.auth)
    assert token.status_code == 201

    err = assert_error(dns_client.delete("/v1/domains/example.test/", headers=owner.auth), 409, "domain_in_use")
    assert err.get("fix")
    assert dns_client.get("/v1/domains/example.test/", headers=owner.auth).status_code == 200
    assert dns_client.get(f"/v1/inboxes/{inbox['inbox_id']}/", headers=owner.auth).status_code == 200

    assert dns_client.delete(f"/v1/inboxes/{inbox['inbox_id']}/", headers=owner.auth).status_code == 204
    resp = dns_client.delete("/v1/domains/example.test/", headers=owner.auth)
    assert resp.status_code == 204, resp.get_data(as_text=True)
    assert_error(dns_client.get("/v1/domains/example.test/", headers=owner.auth), 404, "not_found")
    assert count(world, Domain) == 0
    assert_error(create_inbox(dns_client, owner, "agent@example.test"), 400, "validation_error")
