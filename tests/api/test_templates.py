"""Issue 16 point 4, templates (contract section 10): owners and admins write the tenant's
templates, any session or agent token of the tenant reads and renders them; `variables` found;
rendering escapes values in html_body (a `<script>` stays text) and names a missing value; a
value can never inject a header, through render or through POST /v1/messages/ with template_id.
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest

from tests.api.test_send import CRLF, Q_LF, VICTIM, head_of, parsed, raw_of, sending_box, sent_ok
from tests.helpers import assert_error

NO_TEMPLATE = "tpl_01J00000000000000000000000"
WELCOME = {"name": "Welcome", "subject": "Welcome, {first_name}", "text_body": "Hi {first_name},\nyour plan: {plan}.",
           "html_body": "<style>p {color: #333}</style><p>Hi <b>{first_name}</b>, plan {plan} {{literal}}</p>"}


@pytest.fixture
def box(world):
    return sending_box(world, world.owner(), "desk@alpha.test")


def _template(client, auth, **fields):
    resp = client.post("/v1/templates/", json={**WELCOME, **fields}, headers=auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.json


def test_owners_write_and_every_token_of_the_tenant_reads(client, world, box):
    made = _template(client, box.owner.auth)
    assert made["template_id"].startswith("tpl_") and made["variables"] == ["first_name", "plan"]
    assert_error(client.post("/v1/templates/", json=WELCOME, headers=box.agent.auth), 403, "session_required")
    member = world.member(box.owner)
    assert_error(client.post("/v1/templates/", json=WELCOME, headers=member.auth), 403, "forbidden")
    for auth in (box.agent.auth, member.auth, box.owner.auth):
        listed = client.get("/v1/templates/", headers=auth)
        assert listed.status_code == 200 and [t["template_id"] for t in listed.json["results"]] == [made["template_id"]]
        assert client.get(f"/v1/templates/{made['template_id']}/", headers=auth).json["name"] == "Welcome"
    changed = client.patch(f"/v1/templates/{made['template_id']}/", json={"subject": "Hello {nick}"},
                           headers=box.owner.auth)
    assert changed.status_code == 200 and changed.json["variables"] == ["nick", "first_name", "plan"]
    assert_error(client.patch(f"/v1/templates/{made['template_id']}/", json={"subject": "a"}, headers=member.auth),
                 403, "forbidden")
    assert client.delete(f"/v1/templates/{made['template_id']}/", headers=box.owner.auth).status_code == 204
    assert_error(client.get(f"/v1/templates/{made['template_id']}/", headers=box.agent.auth), 404, "not_found")


def test_render_escapes_html_values_and_names_a_missing_one(client, box):
    template_id = _template(client, box.owner.auth)["template_id"]
    values = {"first_name": "<script>alert(1)</script>", "plan": "Gold & Co"}
    resp = client.post(f"/v1/templates/{template_id}/render/", json={"values": values}, headers=box.agent.auth)
    assert resp.status_code == 200, resp.json
    assert resp.json["html_body"] == ("<style>p {color: #333}</style><p>Hi <b>&lt;script&gt;alert(1)&lt;/script&gt;</b>, "
                                      "plan Gold &amp; Co {literal}</p>")
    assert "<script>" not in resp.json["html_body"]
    assert resp.json["text_body"] == "Hi <script>alert(1)</script>,\nyour plan: Gold & Co."  # text is text
    assert resp.json["subject"] == "Welcome, <script>alert(1)</script>"
    err = assert_error(client.post(f"/v1/templates/{template_id}/render/", json={"values": {"first_name": "Ann"}},
                                   headers=box.agent.auth), 400, "template_value_missing", "template_values.plan")
    assert "plan" in err["message"]


@pytest.mark.parametrize("value", [f"hi{CRLF}Bcc: {VICTIM}", f"hi\nBcc: {VICTIM}", f"hi\u2028Bcc: {VICTIM}"])
def test_a_value_cannot_inject_a_header(client, box, value):
    template_id = _template(client, box.owner.auth)["template_id"]
    values = {"first_name": value, "plan": "Gold"}
    assert_error(client.post(f"/v1/templates/{template_id}/render/", json={"values": values}, headers=box.agent.auth),
                 400, "validation_error", "template_values.first_name")
    assert_error(client.post("/v1/messages/", json={"to": [{"email": "bob@beta.test"}], "template_id": template_id,
                                                    "template_values": values}, headers=box.agent.auth),
                 400, "validation_error", "template_values.first_name")


def test_an_encoded_line_break_in_a_value_is_refused_by_the_send_like_any_other(client, box):
    template_id = _template(client, box.owner.auth)["template_id"]
    resp = client.post("/v1/messages/", json={"to": [{"email": "bob@beta.test"}], "template_id": template_id,
                                              "template_values": {"first_name": Q_LF, "plan": "x"}},
                       headers=box.agent.auth)
    assert_error(resp, 400, "validation_error")


def test_send_with_a_template(client, box):
    template_id = _template(client, box.owner.auth)["template_id"]
    sent = sent_ok(client, box.agent.auth, to=[{"email": "bob@beta.test"}], template_id=template_id,
                   template_values={"first_name": "<i>Ann</i>", "plan": 3})
    raw = raw_of(client, box.agent.auth, sent["message_id"])
    message = parsed(raw)
    assert message["Subject"] == "Welcome, <i>Ann</i>" and b"Bcc" not in head_of(raw)
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Hi <i>Ann</i>,\nyour plan: 3.")
    assert "&lt;i&gt;Ann&lt;/i&gt;" in message.get_body(("html",)).get_content()
    own_subject = sent_ok(client, box.agent.auth, to=[{"email": "bob@beta.test"}], subject="Mine",
                          template_id=template_id, template_values={"first_name": "A", "plan": "B"})
    assert parsed(raw_of(client, box.agent.auth, own_subject["message_id"]))["Subject"] == "Mine"
    assert_error(client.post("/v1/messages/", json={"to": [{"email": "bob@beta.test"}], "template_id": template_id},
                             headers=box.agent.auth), 400, "template_value_missing")
    assert_error(client.post("/v1/messages/", json={"to": [{"email": "bob@beta.test"}], "template_id": NO_TEMPLATE},
                             headers=box.agent.auth), 404, "not_found", "template_id")


def test_another_tenants_templates_are_404(client, world, box):
    template_id = _template(client, box.owner.auth)["template_id"]
    other = world.owner()
    stranger = world.agent(other, world.inbox(other), ["email:send", "email:read"])
    for auth in (other.auth, stranger.auth):
        for method in ("GET", "DELETE"):
            resp = client.open(f"/v1/templates/{template_id}/", method=method, headers=auth)
            if resp.status_code == 403:
                assert resp.json["error"]["code"] == "session_required"
                continue
            assert_error(resp, 404, "not_found")
        assert_error(client.post(f"/v1/templates/{template_id}/render/", json={"values": {}}, headers=auth),
                     404, "not_found")
        assert client.get("/v1/templates/", headers=auth).json["results"] == []
    assert_error(client.patch(f"/v1/templates/{template_id}/", json={"name": "x"}, headers=other.auth), 404, "not_found")
