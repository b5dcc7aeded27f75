"""Issue 24 point 1: every resource describes itself at /v1/<resource>/reference/, generated from the
route declarations, and every path a reference names is an operation of the OpenAPI document."""
from __future__ import annotations

import pytest

from api import references
from api.framework import REGISTRY

# Contract section 19's resources. One with routes must have a reference; one whose area is not
# built yet has no routes (and answers 404) until its routes are declared, when it gets one.
CONTRACT_RESOURCES = ("domains", "inboxes", "tokens", "messages", "labels", "contacts", "calendar",
                      "tasks", "files", "events", "alerts", "workflows", "enrichment", "billing",
                      "audit", "compliance")
SHAPE = {"version", "resource", "payload", "fields"}


def _operations(client) -> set[tuple[str, str]]:
    doc = client.get("/v1/openapi.json").get_json()
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def _declared(resource: str) -> bool:
    return any(spec.rule.startswith(f"/v1/{resource}/") for spec in REGISTRY.values())


@pytest.mark.parametrize("resource", CONTRACT_RESOURCES)
def test_a_contract_resource_with_routes_has_a_reference(client, resource):
    answer = client.get(f"/v1/{resource}/reference/")
    if not _declared(resource):
        assert answer.status_code == 404
        return
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert SHAPE <= set(body) and body["resource"] == resource
    assert body["payload"], resource
    for field in body["fields"]:
        assert set(field) >= {"name", "type", "required", "description"}, field


def test_every_declared_resource_has_a_reference_naming_only_real_paths(client):
    operations = _operations(client)
    index = client.get("/v1/reference/api/").get_json()
    assert SHAPE <= set(index) and index["resource"] == "api"
    assert set(index["resources"]) == set(references.resources())
    assert {(op["method"], op["path"]) for op in index["payload"].values()} <= operations
    for resource, path in index["resources"].items():
        body = client.get(path).get_json()
        assert SHAPE <= set(body), (resource, body)
        named = {(op["method"], op["path"]) for op in body["payload"].values()}
        assert named <= operations, (resource, named - operations)
        assert ("GET", path) in operations


def test_a_payload_path_missing_from_the_document_fails_the_check(client, monkeypatch):
    """The check above can fail: a resource whose extra keys name a path that does not exist."""
    monkeypatch.setitem(references.EXTRAS, "labels",
                        lambda ctx: {"payload": {"ghost": {"method": "GET", "path": "/v1/labels/ghost/"}}})
    body = client.get("/v1/labels/reference/").get_json()
    named = {(op["method"], op["path"]) for op in body["payload"].values()}
    assert ("GET", "/v1/labels/ghost/") in named - _operations(client)


def test_fields_come_from_the_schemas(client):
    messages = client.get("/v1/messages/reference/").get_json()
    fields = {f["name"]: f for f in messages["fields"]}
    assert {"message_id", "thread_id", "subject"} <= set(fields)
    assert fields["to"]["type"] == "array<MessageAddress>" and fields["subject"]["required"] is False
    assert messages["payload"]["send_message"] == {
        "method": "POST", "path": "/v1/messages/", "auth": "scope: email:send",
        "summary": REGISTRY["messages.send_message"].summary}
    labels = {f["name"]: f for f in client.get("/v1/labels/reference/").get_json()["fields"]}
    assert labels["name"]["required"] is True and labels["label_id"]["type"] == "string"
    assert labels["color"]["description"] == "#rrggbb"
    calendar = {f["name"]: f for f in client.get("/v1/calendar/reference/").get_json()["fields"]}
    assert calendar["title"]["required"] is True and calendar["location"]["required"] is False


def test_events_keep_their_own_keys_over_the_generated_reference(client):
    body = client.get("/v1/events/reference/").get_json()
    assert {"builder", "events", "categories"} <= set(body)
    assert {"list_events", "subscribe_alert", "stream_events", "event_types"} <= set(body["payload"])
    assert body["payload"]["list_events"]["scope"] == "email:read"  # the catalogue's own detail


def test_a_new_declaration_gets_its_reference_without_code(client):
    """The generator reads the registry: a resource is whatever /v1/<name>/ routes declare."""
    specs = references.resources()["tasks"]
    assert references.build("tasks", specs)["payload"].keys() == {
        spec.endpoint.rsplit(".", 1)[-1] for spec in specs}
