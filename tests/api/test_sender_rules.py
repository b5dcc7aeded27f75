"""Sender rules and forwarding through the API (issue 20.3, 20.4): the outbound rules in the one
send path (403 recipient_not_allowed naming the address), the patterns, validation, and tenancy."""
from __future__ import annotations

import pytest

from appliance.services.mail.sender_rules import allows, matches
from tests.api.test_send import sending_box
from tests.helpers import assert_error

RULES = "/v1/sender-rules/"


@pytest.mark.parametrize(("address", "pattern", "hit"), [
    ("ann@vendor.test", "@vendor.test", True),
    ("ann@mail.vendor.test", "@vendor.test", False),
    ("ann@mail.vendor.test", "*.vendor.test", True),
    ("ann@vendor.test", "*.vendor.test", False),
    ("ann@notvendor.test", "*.vendor.test", False),
    ("Ann@Vendor.Test", "ann@vendor.test", True),
    ("bob@vendor.test", "ann@vendor.test", False),
    ("ann@bücher.test", "@xn--bcher-kva.test", True),
])
def test_patterns(address: str, pattern: str, hit: bool) -> None:
    assert matches(address, [pattern]) is hit
    assert allows("allowlist", [pattern], address) is hit
    assert allows("blocklist", [pattern], address) is not hit
    assert allows("open", [pattern], address) is True


def test_the_api_refuses_an_outbound_recipient_the_rules_do_not_allow(client, world) -> None:
    box = sending_box(world, world.owner(), "sales@alpha.test")
    rules = client.put(RULES, json={"outbound_mode": "blocklist", "outbound_patterns": ["@rival.test", "*.spam.test"]},
                       headers=box.agent.auth)
    assert rules.status_code == 403  # the agent holds email:send only, not workflows:write
    rules = client.put(RULES, json={"inbox_id": box.inbox_id, "outbound_mode": "blocklist",
                                    "outbound_patterns": ["@Rival.test", "*.spam.test"]}, headers=box.owner.auth)
    assert rules.status_code == 200, rules.get_data(as_text=True)
    assert rules.json["outbound_patterns"] == ["@rival.test", "*.spam.test"]
    body = {"to": [{"email": "ok@partner.test"}], "cc": [{"email": "boss@rival.test"}], "subject": "Hi",
            "text_body": "Hello"}
    err = assert_error(client.post("/v1/messages/", json=body, headers=box.agent.auth), 403,
                       "recipient_not_allowed", "to")
    assert "boss@rival.test" in err["message"]
    body["cc"] = [{"email": "x@deep.spam.test"}]
    assert "x@deep.spam.test" in assert_error(client.post("/v1/messages/", json=body, headers=box.agent.auth),
                                              403, "recipient_not_allowed")["message"]
    del body["cc"]
    assert client.post("/v1/messages/", json=body, headers=box.agent.auth).status_code == 201
    # An allowlist lets only its own through.
    client.put(RULES, json={"inbox_id": box.inbox_id, "outbound_mode": "allowlist",
                            "outbound_patterns": ["@partner.test"]}, headers=box.owner.auth)
    assert client.post("/v1/messages/", json=body, headers=box.agent.auth).status_code == 201
    body["to"] = [{"email": "someone@else.test"}]
    assert_error(client.post("/v1/messages/", json=body, headers=box.agent.auth), 403, "recipient_not_allowed")


def test_rules_read_back_with_defaults_and_bad_patterns_are_400(client, world) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@beta.test")
    got = client.get(RULES, query_string={"inbox_id": inbox_id}, headers=owner.auth)
    assert got.status_code == 200
    assert (got.json["inbound_mode"], got.json["outbound_mode"], got.json["inbound_patterns"]) == ("open", "open", [])
    for bad in ("vendor", "@", "*.", "not an address", "@no_dots"):
        resp = client.put(RULES, json={"inbox_id": inbox_id, "inbound_patterns": [bad]}, headers=owner.auth)
        assert_error(resp, 400, "validation_error", "inbound_patterns[0]")
    assert_error(client.put(RULES, json={"inbox_id": inbox_id, "inbound_mode": "closed"}, headers=owner.auth),
                 400, "validation_error")
    put = client.put(RULES, json={"inbox_id": inbox_id, "inbound_mode": "allowlist",
                                  "inbound_patterns": ["@partner.test", "Ann@Other.test"]}, headers=owner.auth)
    assert put.status_code == 200, put.get_data(as_text=True)
    again = client.get(RULES, query_string={"inbox_id": inbox_id}, headers=owner.auth).json
    assert again["inbound_patterns"] == ["@partner.test", "ann@other.test"] and again["outbound_mode"] == "open"


def test_forwarding_reads_back_and_is_checked(client, world) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@gamma.test")
    got = client.get("/v1/forwarding/", query_string={"inbox_id": inbox_id}, headers=owner.auth).json
    assert (got["enabled"], got["keep_copy"], got["default_address"]) == (False, True, None)
    assert_error(client.put("/v1/forwarding/", json={"inbox_id": inbox_id, "enabled": True}, headers=owner.auth),
                 400, "validation_error", "default_address")
    assert_error(client.put("/v1/forwarding/", json={"inbox_id": inbox_id, "default_address": "desk@gamma.test",
                                                     "enabled": True}, headers=owner.auth), 400, "validation_error")
    put = client.put("/v1/forwarding/", json={"inbox_id": inbox_id, "default_address": "Me@Home.test",
                                              "enabled": True}, headers=owner.auth)
    assert put.status_code == 200, put.get_data(as_text=True)
    assert (put.json["default_address"], put.json["enabled"], put.json["keep_copy"]) == ("me@home.test", True, True)


@pytest.mark.parametrize("path", [RULES, "/v1/forwarding/"])
def test_another_tenants_inbox_is_404(client, world, path: str) -> None:
    a = world.owner()
    a_inbox = world.inbox(a, "desk@delta.test")
    b = world.owner()
    assert_error(client.get(path, query_string={"inbox_id": a_inbox}, headers=b.auth), 404, "not_found")
    assert_error(client.put(path, json={"inbox_id": a_inbox, "enabled": False} if "forwarding" in path
                            else {"inbox_id": a_inbox, "inbound_mode": "open"}, headers=b.auth), 404, "not_found")
