"""Issue 14.10 (second bullet): contract section 0 says a session caller names the inbox with
`inbox_id` in the query on GET/PATCH/DELETE and in the body on POST. Every route that acts on one
inbox (marked with a scope) accepts it there, declared once in api/framework.py, and the OpenAPI
document says so (schemathesis reads it). Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import re

import pytest

from api.framework import REGISTRY
from appliance.services.identity.auth import SCOPES
from tests.api.test_send import sending_box
from tests.helpers import assert_error

# Routes that take a session but act on no single inbox, so section 0's inbox_id does not apply.
# A new route that takes a session is either scope-marked (then inbox_id is accepted) or listed.
NOT_INBOX_ROUTES = {
    "/auth/": "the caller's own account",
    "/v1/users/me/": "the caller itself",
    "/v1/domains/": "a domain belongs to the tenant, not to an inbox",
    "/v1/inboxes/": "the inbox is in the path (or being created)",
    "/v1/tokens/": "inbox_id is the token's own field (body on create, query filter on list)",
    "/v1/audit/": "the audit log is the tenant's (owners and admins), not an inbox's",
    "/v1/compliance/": "exports, erasure, retention and the audit bundle are a person's or the tenant's (issue 23)",
    "/v1/settings/": "the tenant's settings (an inbox's are at /v1/inboxes/{id}/settings/)",
    "/v1/distribution-lists/": "a list belongs to the tenant; its members are inboxes named by inbox_id in the body",
    "/v1/templates/": "a template belongs to the tenant, not to an inbox (issue 16)",
    "/v1/app-passwords/": "a person's own mail-client passwords: inbox_id is a field of the one being made (issue 25)",
}


def _fill(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", "x1", rule)


def _inbox_routes():
    return sorted((s for s in REGISTRY.values() if s.auth.kind == "scope"), key=lambda s: (s.rule, s.method))


def test_every_route_is_either_an_inbox_route_or_listed(app):
    """Walks the app's route table: each /v1/ and /auth/ rule is declared, and each declared
    route taking a session either takes inbox_id where section 0 says or is listed above."""
    declared = {(s.rule, s.method) for s in REGISTRY.values()}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/v1/", "/auth/")):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (rule.rule, method) in declared, (rule.rule, method)
    for spec in REGISTRY.values():
        if spec.auth.kind == "public":
            continue
        if spec.auth.kind == "scope":
            # A raw (non-JSON) body, e.g. a vCard file, cannot hold inbox_id: the query does.
            where = "body" if spec.method in ("POST", "PUT") and spec.accepts is None else "query"
            assert spec.inbox_in == where, spec.endpoint
            model = spec.body if where == "body" else spec.query
            assert "inbox_id" in model.model_fields, spec.endpoint
        else:
            assert spec.rule.startswith(tuple(NOT_INBOX_ROUTES)), f"{spec.method} {spec.rule}: list why, above"


@pytest.fixture
def alice(world):
    return sending_box(world, world.owner(), "sales@alpha.test")


def test_a_session_naming_its_inbox_is_never_refused_for_it_on_any_inbox_route(client, alice):
    inbox_id = alice.inbox_id
    for spec in _inbox_routes():
        path = _fill(spec.rule)
        if spec.inbox_in == "body":
            resp = client.open(path, method=spec.method, json={"inbox_id": inbox_id}, headers=alice.owner.auth)
        else:
            resp = client.open(path, method=spec.method, query_string={"inbox_id": inbox_id},
                               json={} if spec.body is not None else None, headers=alice.owner.auth)
        assert resp.status_code < 500, (spec.endpoint, resp.get_data(as_text=True))
        if resp.status_code >= 400:
            err = resp.get_json()["error"]
            assert err.get("field") != "inbox_id" and "unknown" not in err["message"], (spec.endpoint, err)
            # An upload route (multipart) refuses the empty body itself, before any inbox check.
            refusals = ("not_found", "validation_error") + (("invalid_request",) if spec.accepts else ())
            assert err["code"] in refusals, (spec.endpoint, err)


def test_an_agent_naming_another_inbox_is_refused_on_every_inbox_route(client, world, alice):
    agent = world.agent(alice.owner, alice.inbox_id, list(SCOPES))
    other = world.inbox(alice.owner)
    for spec in _inbox_routes():
        path = _fill(spec.rule)
        if spec.inbox_in == "body":
            resp = client.open(path, method=spec.method, json={"inbox_id": other}, headers=agent.auth)
        else:
            resp = client.open(path, method=spec.method, query_string={"inbox_id": other},
                               json={} if spec.body is not None else None, headers=agent.auth)
        assert_error(resp, 403, "inbox_mismatch", field="inbox_id")


def test_approvals_take_inbox_id_in_the_query_and_the_body(client, world, alice):
    """The two calls the issue names: GET /v1/approvals/?inbox_id=… and approve with {"inbox_id"}."""
    held = world.agent(alice.owner, alice.inbox_id, ["email:send"], requires_approval=["email:send"])
    sent = client.post("/v1/messages/", json={"to": [{"email": "bob@remote.test"}], "text_body": "hi"},
                       headers=held.auth)
    approval_id = sent.json["approval_id"]
    listed = client.get("/v1/approvals/", query_string={"inbox_id": alice.inbox_id}, headers=alice.owner.auth)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [a["approval_id"] for a in listed.json["results"]] == [approval_id]
    other = world.inbox(alice.owner)
    elsewhere = client.get("/v1/approvals/", query_string={"inbox_id": other}, headers=alice.owner.auth)
    assert elsewhere.status_code == 200 and elsewhere.json["results"] == []
    got = client.get(f"/v1/approvals/{approval_id}/", query_string={"inbox_id": alice.inbox_id},
                     headers=alice.owner.auth)
    assert got.status_code == 200 and got.json["inbox_id"] == alice.inbox_id
    # Naming another inbox than the approval's: not found there, and nothing is decided.
    assert_error(client.post(f"/v1/approvals/{approval_id}/approve/", json={"inbox_id": other},
                             headers=alice.owner.auth), 404, "not_found")
    resp = client.post(f"/v1/approvals/{approval_id}/approve/", json={"inbox_id": alice.inbox_id},
                       headers=alice.owner.auth)
    assert resp.status_code == 204, resp.get_data(as_text=True)
    # Without a body (or inbox_id) it still works as before.
    again = client.post(f"/v1/approvals/{approval_id}/reject/", headers=alice.owner.auth)
    assert_error(again, 400, "approval_decided")


def test_the_openapi_document_declares_inbox_id_where_it_is_accepted(client):
    doc = client.get("/v1/openapi.json").json
    schemas = doc["components"]["schemas"]
    for spec in _inbox_routes():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", spec.rule)
        op = doc["paths"][path][spec.method.lower()]
        if spec.inbox_in == "query":
            assert "inbox_id" in {p["name"] for p in op["parameters"] if p["in"] == "query"}, spec.endpoint
        else:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert "inbox_id" in schemas[ref]["properties"], spec.endpoint
            # A body that only names the inbox may be left out (approve, reject).
            assert op["requestBody"]["required"] is (spec.body_optional is False), spec.endpoint
