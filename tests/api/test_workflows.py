"""Issue 20, point 1: the workflows API: create, list, get, change, delete; what a workflow may
hold is checked when it is saved (400 naming the field); the dry run shows each condition and
action and changes nothing; a missing field (enrichment.phishing) never matches."""
from __future__ import annotations

from sqlalchemy import func, select

from appliance.models import Message, Task, WorkflowRun
from appliance.services.mail import inbound
from tests.helpers import assert_error

RAW = (b"From: Bill <billing@vendor.test>\r\nTo: desk@api-wf.example\r\nSubject: Invoice 9\r\n"
       b"Message-ID: <i9@vendor.test>\r\n{extra}\r\nPay me.\r\n")


def _body(**extra) -> dict:
    return {"name": "Invoices", "trigger": {"type": "email_received"},
            "conditions": [{"field": "from_domain", "op": "eq", "value": "Vendor.TEST"}],
            "writes": [{"target": {"type": "email.add_label", "label": "invoices"}},
                       {"target": {"type": "email.reply", "text_body": "Thanks!"}}], **extra}


def _receive(store, inbox_id: str, extra: bytes = b"") -> str:
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=RAW.replace(b"{extra}", extra),
                                   envelope_from="billing@vendor.test", envelope_to={})
        return stored.message_id if hasattr(stored, "message_id") else stored.id


def test_create_read_change_delete(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@api-wf.example")
    agent = world.agent(owner, inbox_id, ["workflows:read", "workflows:write"])
    made = client.post("/v1/workflows/", json=_body(), headers=agent.auth)
    assert made.status_code == 201, made.json
    workflow_id = made.json["workflow_id"]
    assert workflow_id.startswith("wfl_") and made.json["secret"].startswith("whsec_")
    assert made.json["conditions"] == [{"field": "from_domain", "op": "eq", "value": "Vendor.TEST"}]
    listed = client.get("/v1/workflows/", headers=agent.auth).json
    assert [w["workflow_id"] for w in listed["results"]] == [workflow_id] and listed["cursor"] is None
    assert "secret" not in listed["results"][0]
    changed = client.patch(f"/v1/workflows/{workflow_id}/", json={"enabled": False, "name": "Bills"},
                           headers=agent.auth)
    assert changed.status_code == 200 and changed.json["enabled"] is False and changed.json["name"] == "Bills"
    read_only = world.agent(owner, inbox_id, ["workflows:read"])
    assert_error(client.post("/v1/workflows/", json=_body(), headers=read_only.auth), 403, "insufficient_scope")
    assert client.delete(f"/v1/workflows/{workflow_id}/", headers=agent.auth).status_code == 204
    assert_error(client.get(f"/v1/workflows/{workflow_id}/", headers=agent.auth), 404, "not_found")


def test_what_cannot_run_is_refused_when_saved(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    auth = world.agent(owner, inbox_id, ["workflows:write"]).auth
    cases = [
        (_body(conditions=[{"field": "subject", "op": "matches", "value": "(unclosed"}]), "conditions[0].value"),
        (_body(conditions=[{"field": "colour", "op": "eq", "value": "x"}]), "conditions[0].field"),
        (_body(conditions=[{"field": "subject", "op": "in", "value": "x"}]), "conditions[0].value"),
        (_body(conditions=[{"field": "has_attachments", "op": "gt", "value": "x"}]), "conditions[0].value"),
        (_body(writes=[]), "writes"),
        (_body(writes=[{"target": {"type": "email.add_label"}}]), "writes[0].target.label"),
        (_body(writes=[{"target": {"type": "email.forward", "to": "not an address"}}]), "writes[0].target.to"),
        (_body(trigger={"type": "event", "event_type": "no.such"}), "trigger.event_type"),
        (_body(trigger={"type": "event", "event_type": "workflow.run_completed"}), "trigger.event_type"),
    ]
    for body, field in cases:
        assert_error(client.post("/v1/workflows/", json=body, headers=auth), 400, "validation_error", field=field)
    private = _body(writes=[{"target": {"type": "webhook", "url": "https://10.0.0.7/hook"}}])
    assert_error(client.post("/v1/workflows/", json=private, headers=auth), 400, "webhook_target_forbidden",
                 field="writes[0].target.url")
    other = world.owner()
    template = client.post("/v1/templates/", json={"name": "t", "text_body": "Hi {name}"}, headers=other.auth)
    theirs = _body(writes=[{"target": {"type": "email.reply", "template_id": template.json["template_id"]}}])
    assert_error(client.post("/v1/workflows/", json=theirs, headers=auth), 404, "not_found",
                 field="writes[0].target.template_id")


def test_the_dry_run_shows_conditions_and_actions_and_changes_nothing(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@api-wf.example")
    auth = world.agent(owner, inbox_id, ["workflows:read", "workflows:write"]).auth
    workflow_id = client.post("/v1/workflows/", json=_body(writes=[
        {"target": {"type": "email.add_label", "label": "invoices"}},
        {"target": {"type": "task", "summary": "Pay {subject}"}},
        {"target": {"type": "email.reply", "text_body": "Thanks!"}}]), headers=auth).json["workflow_id"]
    person = _receive(store, inbox_id)
    robot = _receive(store, inbox_id, b"Auto-Submitted: auto-generated\r\n")
    dry = client.post(f"/v1/workflows/{workflow_id}/test/", json={"message_id": person}, headers=auth)
    assert dry.status_code == 200, dry.json
    assert dry.json["matched"] is True and dry.json["conditions"][0]["result"] is True
    assert [(a["type"], a["outcome"]) for a in dry.json["actions"]] == [
        ("email.add_label", "would_run"), ("task", "would_run"), ("email.reply", "would_run")]
    auto = client.post(f"/v1/workflows/{workflow_id}/test/", json={"message_id": robot}, headers=auth).json
    assert auto["actions"][2] == {"type": "email.reply", "outcome": "skipped",
                                  "error": "Auto-Submitted: auto-generated"}
    assert_error(client.post(f"/v1/workflows/{workflow_id}/test/", json={"message_id": "msg_01J00000000000000000000000"},
                             headers=auth), 404, "not_found", field="message_id")
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(WorkflowRun)) == 0
        assert db.scalar(select(func.count()).select_from(Task)) == 0
        assert all(m.labels == [] for m in db.scalars(select(Message)))


def test_a_missing_field_never_matches(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@api-wf.example")
    auth = world.agent(owner, inbox_id, ["workflows:read", "workflows:write"]).auth
    message_id = _receive(store, inbox_id)
    for condition, matched in (({"field": "enrichment.phishing", "op": "eq", "value": True}, False),
                               ({"field": "enrichment.phishing", "op": "neq", "value": True}, False),
                               ({"field": "enrichment.phishing", "op": "exists", "value": False}, True),
                               ({"field": "header:X-Nothing", "op": "not_contains", "value": "x"}, False),
                               ({"field": "header:message-id", "op": "contains", "value": "i9@vendor"}, True),
                               ({"field": "to_address", "op": "in", "value": ["DESK@api-wf.example"]}, True)):
        workflow_id = client.post("/v1/workflows/", json=_body(conditions=[condition]),
                                  headers=auth).json["workflow_id"]
        dry = client.post(f"/v1/workflows/{workflow_id}/test/", json={"message_id": message_id}, headers=auth)
        assert dry.json["matched"] is matched, (condition, dry.json)
