"""Workflows per inbox (issue 20) for a tenant's owners and admins: a builder of form rows (a
trigger, condition rows of field, operator and value, action rows of a type and its one
parameter), enable and disable, delete, and each workflow's run history with every action's
outcome. The same service functions as /v1/workflows/. The secret that signs a workflow's
webhook actions is shown once, in the body of the answer that created the workflow."""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.models import MANAGER_ROLES
from appliance.services.automation import workflow_conditions, workflows
from appliance.services.automation.catalogue import visible_types
from appliance.services.identity import inboxes
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading, settings

nav_item("Workflows", "webui.workflows_home", order=40, audience="tenant", roles=MANAGER_ROLES)
PAGE = 200
RUNS = 100
ROWS = 3  # blank condition and action rows the builder offers
# The one parameter each action type takes from its row (email.reply: a tpl_ id or the reply's text).
PARAMETER = {"email.add_label": "label", "email.remove_label": "label", "task": "summary", "email.forward": "to",
             "webhook": "url", "email.reply": "text_body"}


@bp.route("/admin/workflows/")
@manager_required
def workflows_home():  # noqa: ANN201
    """The inboxes, each with its workflows page (the only one's shown at once)."""
    return inbox_home("webui.workflows_page", "workflows/home.html")


def _builder(**extra) -> dict:  # noqa: ANN003
    return {"fields": workflow_conditions.FIELDS, "ops": workflow_conditions.OPS, "actions": workflows.ACTIONS,
            "triggers": list(workflows.TRIGGER_TYPES) + ["event"], "types": visible_types(include_admin=True),
            "blank_rows": ROWS, **extra}


@bp.route("/admin/inboxes/<inbox_id>/workflows/")
@manager_required
def workflows_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        rows = workflows.list_workflows(db, principal, inbox.id, limit=PAGE)
    return render_template("workflows/index.html", inbox=inbox, rows=[workflows.workflow_to_dict(w) for w in rows],
                           **_builder(workflow=None))


def _value(op: str, text: str):  # noqa: ANN202 - what a condition row's value means for its operator
    text = text.strip()
    if op == "in":
        return [v.strip() for v in text.split(",") if v.strip()]
    if op in ("gt", "lt"):
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            return text  # the service names the field
    if op == "exists":
        return text.lower() not in ("false", "no", "0")
    return text


def _conditions() -> list[dict]:
    form = request.form
    rows = zip(form.getlist("cond_field"), form.getlist("cond_op"), form.getlist("cond_value"))
    return [{"field": f.strip(), "op": op, "value": _value(op, v)} for f, op, v in rows if f.strip()]


def _writes() -> list[dict]:
    writes = []
    for kind, value in zip(request.form.getlist("act_type"), request.form.getlist("act_value")):
        if not kind:
            continue
        target, value = {"type": kind}, value.strip()
        if kind == "email.reply" and value.startswith("tpl_"):
            target["template_id"] = value
        elif kind in PARAMETER:
            target[PARAMETER[kind]] = value
        writes.append({"target": target})
    return writes


def _form_input() -> workflows.WorkflowInput:
    form = request.form
    trigger = {"type": form.get("trigger", "")}
    if trigger["type"] == "event":
        trigger["event_type"] = form.get("event_type", "").strip()
    return workflows.WorkflowInput(name=form.get("name", ""), trigger=trigger, conditions=_conditions(),
                                   writes=_writes(), enabled=form.get("enabled") == "on")


@bp.route("/admin/inboxes/<inbox_id>/workflows/", methods=["POST"])
@manager_required
def workflow_create(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox is a 404 page, before anything else
        inboxes.get_inbox(db, current_principal(), inbox_id)
    with attempt() as work:
        workflow, secret = workflows.create_workflow(work.db, settings(), current_principal(), inbox_id,
                                                     _form_input())
        shown = workflows.workflow_to_dict(workflow)
    if work.failed:
        return redirect(url_for("webui.workflows_page", inbox_id=inbox_id), code=303)
    if not any(w["target"]["type"] == "webhook" for w in shown["writes"]):
        flash(f"Created the workflow {shown['name']}.", "success")
        return redirect(url_for("webui.workflow_page", workflow_id=shown["workflow_id"]), code=303)
    body = render_template("workflows/secret.html", workflow=shown, secret=secret)
    return Response(body, status=200, mimetype="text/html")


def _own(workflow_id: str) -> str:
    """The caller's workflow's inbox id; another tenant's workflow is a 404 page."""
    with reading() as db:
        return workflows.get_workflow(db, current_principal(), workflow_id).inbox_id


@bp.route("/admin/workflows/<workflow_id>/")
@manager_required
def workflow_page(workflow_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        workflow = workflows.get_workflow(db, principal, workflow_id)
        inbox = inboxes.get_inbox(db, principal, workflow.inbox_id)
        runs = [workflows.run_to_dict(r) for r in workflows.list_runs(db, principal, workflow_id, None, limit=RUNS)]
        shown = workflows.workflow_to_dict(workflow)
    return render_template("workflows/detail.html", inbox=inbox, runs=runs, **_builder(workflow=shown))


@bp.route("/admin/workflows/<workflow_id>/", methods=["POST"])
@manager_required
def workflow_update(workflow_id: str):  # noqa: ANN201
    _own(workflow_id)
    with attempt() as work:
        workflows.update_workflow(work.db, settings(), current_principal(), workflow_id, None, _form_input())
    if work.ok:
        flash("Saved the workflow.", "success")
    return redirect(url_for("webui.workflow_page", workflow_id=workflow_id), code=303)


@bp.route("/admin/workflows/<workflow_id>/enable/", methods=["POST"])
@manager_required
def workflow_enable(workflow_id: str):  # noqa: ANN201
    return _switch(workflow_id, True, "is enabled: it runs on new events.")


@bp.route("/admin/workflows/<workflow_id>/disable/", methods=["POST"])
@manager_required
def workflow_disable(workflow_id: str):  # noqa: ANN201
    return _switch(workflow_id, False, "is disabled: it runs on nothing until you enable it.")


def _switch(workflow_id: str, enabled: bool, done: str) -> Response:
    inbox_id = _own(workflow_id)
    with attempt() as work:
        workflows.update_workflow(work.db, settings(), current_principal(), workflow_id, None,
                                  workflows.WorkflowInput(enabled=enabled))
    if work.ok:
        flash(f"The workflow {workflow_id} {done}", "success")
    return redirect(url_for("webui.workflows_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/workflows/<workflow_id>/delete/", methods=["POST"])
@manager_required
def workflow_delete(workflow_id: str):  # noqa: ANN201
    inbox_id = _own(workflow_id)
    asked = confirmation(f"Delete the workflow {workflow_id}? Its run history and queued webhooks go with it; "
                         "this cannot be undone.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        workflows.delete_workflow(work.db, current_principal(), workflow_id)
    if work.ok:
        flash(f"Deleted the workflow {workflow_id}.", "success")
    return redirect(url_for("webui.workflows_page", inbox_id=inbox_id), code=303)
