"""Issue 20, point 7 (workflows): the builder is form rows (trigger, condition rows, action rows),
not raw JSON; the run history shows each run's outcome and each action's; enable, disable and
delete (with confirmation); a webhook's secret shown once; another tenant's workflow is a 404."""
from __future__ import annotations

import re

from sqlalchemy import select

from appliance.models import Workflow
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.webui.conftest import text_of

SECRET = re.compile(r'<code class="raw-token" id="raw-secret">(whsec_[^<]+)</code>')


def _build(web, inbox_id: str, **extra):
    data = {"name": "Invoices", "trigger": "email_received", "event_type": "", "enabled": "on",
            "cond_field": ["from_domain", "subject", "to_address", ""], "cond_op": ["eq", "matches", "in", "eq"],
            "cond_value": ["vendor.test", "^Invoice \\d+", "desk@rows.example, ap@rows.example", ""],
            "act_type": ["email.add_label", "task", "email.mark_read", ""],
            "act_value": ["invoices", "Pay {subject}", "", ""], **extra}
    return web.post(f"/admin/inboxes/{inbox_id}/workflows/", data)


def _workflow(store) -> Workflow | None:
    with store.session() as db:
        return db.scalar(select(Workflow))


def test_the_builder_makes_a_workflow_from_rows_and_shows_its_runs(web, world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@rows.example")
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/inboxes/{inbox_id}/workflows/"))
    assert "No workflows yet" in page and 'name="cond_field"' in page and 'name="act_type"' in page
    assert "<textarea" not in page  # rows, not a JSON box
    resp = _build(web, inbox_id)
    assert resp.status_code == 303
    workflow = _workflow(store)
    assert workflow.trigger == {"type": "email_received"} and workflow.enabled
    assert workflow.conditions == [
        {"field": "from_domain", "op": "eq", "value": "vendor.test"},
        {"field": "subject", "op": "matches", "value": "^Invoice \\d+"},
        {"field": "to_address", "op": "in", "value": ["desk@rows.example", "ap@rows.example"]}]
    assert workflow.writes == [{"target": {"type": "email.add_label", "label": "invoices"}},
                               {"target": {"type": "task", "summary": "Pay {subject}"}},
                               {"target": {"type": "email.mark_read"}}]
    with store.session() as db:
        raw = (b"From: billing@vendor.test\r\nTo: desk@rows.example\r\nSubject: Invoice 7\r\n"
               b"Message-ID: <i7@vendor.test>\r\n\r\nPay me.\r\n")
        inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="billing@vendor.test", envelope_to={})
    worker = Worker(store, settings)
    try:
        worker.run_workflows()
    finally:
        worker.close()
    detail = text_of(web.get(f"/admin/workflows/{workflow.id}/"))
    assert "completed" in detail and "email.add_label</code>: done" in detail and "task</code>: done" in detail
    assert 'value="vendor.test"' in detail  # the builder shows the rows to change


def test_a_bad_row_is_a_message_and_a_webhook_secret_is_shown_once(web, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    web.sign_in(owner.email)
    resp = _build(web, inbox_id, cond_op=["matches", "eq", "eq", "eq"], cond_value=["(unclosed", "", "", ""])
    assert resp.status_code == 303
    assert "not a regular expression" in text_of(web.get(resp.headers["Location"])) and _workflow(store) is None
    made = _build(web, inbox_id, act_type=["webhook", "", "", ""], act_value=["https://93.184.215.14/in", "", "", ""])
    page = text_of(made)
    assert made.status_code == 200 and "shown only this once" in page
    secret = SECRET.search(page).group(1)
    workflow = _workflow(store)
    assert secret not in text_of(web.get(f"/admin/workflows/{workflow.id}/"))
    assert secret not in text_of(web.get(f"/admin/inboxes/{inbox_id}/workflows/"))


def test_disable_enable_delete_and_another_tenant_gets_404(web, world, store, web_for, app):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    web.sign_in(owner.email)
    _build(web, inbox_id)
    workflow_id = _workflow(store).id
    assert web.post(f"/admin/workflows/{workflow_id}/disable/").status_code == 303
    assert _workflow(store).enabled is False
    web.post(f"/admin/workflows/{workflow_id}/enable/")
    assert _workflow(store).enabled is True
    assert web.post(f"/admin/workflows/{workflow_id}/", {"name": "x"}, csrf=False).status_code in (400, 403)

    other = world.owner()
    intruder = web_for()
    intruder.sign_in(other.email)
    assert intruder.get(f"/admin/workflows/{workflow_id}/").status_code == 404
    assert intruder.post(f"/admin/workflows/{workflow_id}/delete/", {"confirm": "yes"}).status_code == 404
    assert _workflow(store) is not None

    asked = text_of(web.post(f"/admin/workflows/{workflow_id}/delete/"))
    assert "cannot be undone" in asked and _workflow(store) is not None
    assert web.post(f"/admin/workflows/{workflow_id}/delete/", {"confirm": "yes"}).status_code == 303
    assert _workflow(store) is None
