"""Issue 20, point 6: TOML workflow recipes. `validate` answers diagnostics and creates nothing;
`install` creates sequences, then workflows, with placeholders resolved, all or nothing; secrets
pasted into a recipe are refused; a sequence resource goes to sequences.create(session,
principal, **spec), and without a sequences area it is `unsupported_resource`."""
from __future__ import annotations

import sys
import types

from sqlalchemy import func, select

from appliance.models import Event, Workflow
from tests.helpers import assert_error

RECIPE = '''
schema_version = 1
kind = "gent.workflow_recipe"
name = "Invoice triage"

[inputs.vendor_domain]
description = "The vendor's mail domain"

[inputs.label]
default = "invoices"

[[resources]]
type = "workflow"
key = "triage"
name = "Invoices from {{vendor_domain}}"
trigger = { type = "email_received" }
conditions = [{ field = "from_domain", op = "eq", value = "{{ vendor_domain }}" }]
writes = [{ target = { type = "email.add_label", label = "{{label}}" } }]
'''
SEQUENCE = '''
[[resources]]
type = "sequence"
key = "nudge"
name = "Nudge"
exit_on_reply = true
emails = [{ delay_days = 0, subject = "Hello", body = "Hi" }]
'''
FOLLOW = '''
[[resources]]
type = "workflow"
key = "follow"
name = "Follow {{resources.nudge.id}}"
trigger = { type = "email_sent" }
writes = [{ target = { type = "task", summary = "Sequence {{resources.nudge.id}}" } }]
'''


def _post(client, auth, action: str, recipe: str, **inputs):
    return client.post(f"/v1/workflows/recipes/{action}/", json={"recipe": recipe, "inputs": inputs}, headers=auth)


def _workflows(store) -> list[Workflow]:
    with store.session() as db:
        return list(db.scalars(select(Workflow).order_by(Workflow.id)))


def _auth(world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    return world.agent(owner, inbox_id, ["workflows:write", "workflows:read"]).auth


def test_validate_reports_and_creates_nothing(client, world, store):
    auth = _auth(world)
    good = _post(client, auth, "validate", RECIPE, vendor_domain="vendor.test")
    assert good.status_code == 200 and good.json == {"valid": True, "diagnostics": []}
    assert _workflows(store) == []
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Event).where(Event.type == "workflow.created")) == 0
    missing = _post(client, auth, "validate", RECIPE, colour="red").json
    assert missing["valid"] is False
    assert [(d["code"], d["path"], d["severity"]) for d in missing["diagnostics"]] == [
        ("missing_input", "inputs.vendor_domain", "error"), ("unexpected_input", "inputs.colour", "warning")]
    cases = {
        "secret_in_recipe": RECIPE.replace('label = "{{label}}"', 'label = "x" } }, { target = { type = '
                                           '"webhook", url = "https://bob:hunter2secret@hooks.example.com/in"'),
        "unknown_input": RECIPE.replace("{{label}}", "{{labl}}"),
        "invalid_toml": RECIPE + "\n[[resources]\n",
        "wrong_kind": RECIPE.replace("gent.workflow_recipe", "something.else"),
        "invalid_resource": RECIPE.replace('op = "eq"', 'op = "matches"').replace("{{ vendor_domain }}", "(x"),
    }
    for code, recipe in cases.items():
        answer = _post(client, auth, "validate", recipe, vendor_domain="vendor.test").json
        assert answer["valid"] is False and code in [d["code"] for d in answer["diagnostics"]], (code, answer)
    token = RECIPE.replace('[inputs.label]\ndefault = "invoices"', '[inputs.label]\ndefault = "invoices"\n'
                                                                   'token = "gent_' + "x" * 44 + '"')
    assert "secret_in_recipe" in [d["code"] for d in _post(client, auth, "validate", token,
                                                           vendor_domain="v.test").json["diagnostics"]]
    assert _workflows(store) == []


def test_install_resolves_placeholders_and_is_all_or_nothing(client, world, store):
    auth = _auth(world)
    made = _post(client, auth, "install", RECIPE, vendor_domain="vendor.test")
    assert made.status_code == 201, made.json
    [resource] = made.json["resources"]
    assert resource["type"] == "workflow" and resource["key"] == "triage" and resource["secret"].startswith("whsec_")
    [workflow] = _workflows(store)
    assert workflow.id == resource["id"] and workflow.name == "Invoices from vendor.test"
    assert workflow.conditions[0]["value"] == "vendor.test"
    assert workflow.writes == [{"target": {"type": "email.add_label", "label": "invoices"}}]

    broken = RECIPE + RECIPE.replace('key = "triage"', 'key = "second"').split("[[resources]]")[1].join(
        ["[[resources]]", ""]).replace('op = "eq"', 'op = "nope"')
    refused = _post(client, auth, "install", broken, vendor_domain="other.test")
    assert_error(refused, 400, "recipe_invalid", field="resources[1].conditions[0].op")
    assert len(_workflows(store)) == 1  # the first resource of the refused recipe was not kept either


def test_sequences_go_first_to_the_sequences_area(client, world, store, monkeypatch):
    auth = _auth(world)
    import appliance.services.automation as automation

    monkeypatch.setitem(sys.modules, "appliance.services.automation.sequences", None)  # no such area
    monkeypatch.delattr(automation, "sequences", raising=False)
    answer = _post(client, auth, "validate", RECIPE + SEQUENCE, vendor_domain="v.test").json
    assert [d["code"] for d in answer["diagnostics"]] == ["unsupported_resource"]

    calls = []

    def create(session, principal, **spec):  # noqa: ANN001, ANN003, ANN202 - the signature h24 provides
        calls.append((principal.kind, spec))
        return {"sequence_id": "seq_01J00000000000000000000000"}
    monkeypatch.setitem(sys.modules, "appliance.services.automation.sequences",
                        types.SimpleNamespace(create=create))
    made = _post(client, auth, "install", RECIPE + FOLLOW + SEQUENCE, vendor_domain="v.test")
    assert made.status_code == 201, made.json
    assert [(r["type"], r["key"]) for r in made.json["resources"]] == [
        ("sequence", "nudge"), ("workflow", "triage"), ("workflow", "follow")]
    assert calls == [("agent", {"name": "Nudge", "exit_on_reply": True,
                                "emails": [{"delay_days": 0, "subject": "Hello", "body": "Hi"}]})]
    follow = [w for w in _workflows(store) if w.name.startswith("Follow")][0]
    assert follow.name == "Follow seq_01J00000000000000000000000"
