"""Workflows (issue 20, contract section 14): an inbox's rules, their runs, and the dry run.

A workflow belongs to one inbox: a `trigger` (`email_received`, `email_sent`, `label_applied`,
`thread_assigned`, or `event` with a registered `event_type`), `conditions` (all must hold:
workflow_conditions.py) and `writes`, the actions in order: `email.add_label`,
`email.remove_label`, `email.mark_read`, `task`, `hold`, `email.reply`, `email.forward`,
`webhook`. The worker runs them (workflow_runner.py) as `actor.kind = workflow`.

Rules kept here:
- Agent tokens act on their own inbox's workflows, members on the inboxes granted to them,
  owners and admins on every inbox of the tenant; another tenant's workflow is 404.
- A webhook target is checked like an alert's (https:// on public addresses unless the operator
  set webhook_allow_private), and signed with the workflow's own `whsec_` secret, shown once in
  the answer that created the workflow.
- Validation happens here, at create and update, so a stored workflow always runs: unknown
  fields, operators and action types, a pattern that does not compile, a template of another
  tenant are 400s naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import GentError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Inbox, Message, Workflow, WorkflowDelivery, WorkflowRun
from appliance.models.workflows import TRIGGERS
from appliance.security import seal, unseal
from appliance.services import tenancy
from appliance.services.automation import alerts, events
from appliance.services.automation import workflow_conditions as conditions_
from appliance.services.automation.event_types import REGISTRY
from appliance.services.identity.auth import Principal, inbox_for, may_use_inbox
from appliance.services.team import templates

ACTIONS = ("email.add_label", "email.remove_label", "email.mark_read", "task", "hold", "email.reply",
           "email.forward", "webhook")
TRIGGER_TYPES = {"email_received": "message.received", "email_sent": "message.sent",
                 "label_applied": "label.applied", "thread_assigned": "thread.assigned"}
MAX_CONDITIONS = 20
MAX_WRITES = 10
_PURPOSE = "workflow-secrets"
_NOT_FOUND = "No such workflow."
_FIX = "List the workflows at GET /v1/workflows/."


@dataclass(frozen=True)
class WorkflowInput:
    """What create (all of it) and update (the fields given) take, as the edges parsed it."""

    name: str | None = None
    trigger: dict | None = None
    conditions: list[dict] | None = None
    writes: list[dict] | None = None
    enabled: bool | None = None


# --- validation --------------------------------------------------------------------------------
def check_trigger(trigger: dict | None) -> dict:
    """A trigger as stored: {"type"} or, for `event`, {"type": "event", "event_type"}."""
    kind = (trigger or {}).get("type")
    if kind not in TRIGGERS:
        raise ValidationError(f"trigger.type: one of {', '.join(TRIGGERS)}", field="trigger.type")
    if kind != "event":
        return {"type": kind}
    event_type = trigger.get("event_type")
    if event_type not in REGISTRY or REGISTRY[event_type].category == "workflows":
        raise ValidationError("trigger.event_type: a registered event type (not a workflow's own)",
                              field="trigger.event_type", fix="Use a type of GET /v1/events/types/.")
    return {"type": "event", "event_type": event_type}


def check_writes(db: Session, settings: Settings, principal: Principal, writes: list[dict] | None) -> list[dict]:
    """The actions as stored, each {"target": {"type", ...}} with only the fields its type takes."""
    if not writes:
        raise ValidationError("writes: name at least one action", field="writes")
    if len(writes) > MAX_WRITES:
        raise ValidationError(f"writes: at most {MAX_WRITES} actions", field="writes")
    return [{"target": _check_target(db, settings, principal, i, (w or {}).get("target") or {})}
            for i, w in enumerate(writes)]


def _text(target: dict, key: str, where: str, limit: int, required: bool = True) -> str | None:
    value = target.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"{where}.{key}: text of 1 to {limit} characters", field=f"{where}.{key}")
    return value.strip()


def _check_target(db: Session, settings: Settings, principal: Principal, index: int, target: dict) -> dict:
    where = f"writes[{index}].target"
    kind = target.get("type")
    if kind not in ACTIONS:
        raise ValidationError(f"{where}.type: one of {', '.join(ACTIONS)}", field=f"{where}.type")
    if kind in ("email.add_label", "email.remove_label"):
        return {"type": kind, "label": _text(target, "label", where, 100)}
    if kind == "task":
        return {"type": kind, "summary": _text(target, "summary", where, 500)}
    if kind == "email.forward":
        from appliance.services.mail.compose import normalize_address
        return {"type": kind, "to": normalize_address(_text(target, "to", where, 320), f"{where}.to")}
    if kind == "email.reply":
        return _check_reply(db, principal, target, where)
    if kind == "webhook":
        return _check_webhook(settings, target, where)
    return {"type": kind}


def _check_reply(db: Session, principal: Principal, target: dict, where: str) -> dict:
    """A reply from a template of the tenant (`template_id`) or from a `text_body` of its own."""
    if target.get("template_id") is not None:
        template = templates.get_template(db, principal, target["template_id"], field=f"{where}.template_id")
        return {"type": "email.reply", "template_id": template.id}
    return {"type": "email.reply", "text_body": _text(target, "text_body", where, 20_000),
            "subject": _text(target, "subject", where, 300, required=False)}


def _check_webhook(settings: Settings, target: dict, where: str) -> dict:
    url = _text(target, "url", where, 2048)
    try:
        alerts.check_target(settings, url)
    except ValidationError as exc:
        raise ValidationError(exc.message.replace("delivery.target", f"{where}.url"), code=exc.code,
                              field=f"{where}.url", fix=exc.fix) from None
    event_type = target.get("event_type")
    if event_type is None:  # the runner sends its default type
        return {"type": "webhook", "url": url}
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise ValidationError(f"{where}.event_type: text of 1 to 100 characters", field=f"{where}.event_type")
    return {"type": "webhook", "url": url, "event_type": event_type}


def _check_conditions(items: list[dict] | None) -> list[dict]:
    items = items or []
    if len(items) > MAX_CONDITIONS:
        raise ValidationError(f"conditions: at most {MAX_CONDITIONS}", field="conditions")
    return [conditions_.check_condition(i, c or {}) for i, c in enumerate(items)]


def _check_name(name: str | None) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationError("name: text of 1 to 200 characters", field="name")
    return name.strip()


# --- secrets -----------------------------------------------------------------------------------
def secret_of(settings: Settings, workflow: Workflow) -> str | None:
    """The `whsec_` secret that signs the workflow's webhook actions."""
    if not workflow.secret_sealed:
        return None
    return unseal(settings.secret_key, _PURPOSE, workflow.secret_sealed, workflow.id).decode()


def _new_secret(settings: Settings, workflow: Workflow) -> str:
    secret = alerts.new_secret()
    workflow.secret_sealed = seal(settings.secret_key, _PURPOSE, secret.encode(), workflow.id)
    return secret


# --- use cases ---------------------------------------------------------------------------------
def create_workflow(db: Session, settings: Settings, principal: Principal, inbox_id: str | None,
                    data: WorkflowInput) -> tuple[Workflow, str]:
    """A new workflow of the caller's inbox, and its webhook secret (shown this once)."""
    inbox = inbox_for(db, principal, inbox_id)
    now = utcnow()
    workflow = Workflow(id=new_id("wfl"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, name=_check_name(data.name),
                        trigger=check_trigger(data.trigger), conditions=_check_conditions(data.conditions),
                        writes=check_writes(db, settings, principal, data.writes),
                        enabled=True if data.enabled is None else data.enabled, created_at=now, updated_at=now)
    secret = _new_secret(settings, workflow)
    db.add(workflow)
    db.flush()
    _announce(db, workflow, "workflow.created", principal)
    return workflow, secret


def get_workflow(db: Session, principal: Principal, workflow_id: str, inbox_id: str | None = None) -> Workflow:
    """A workflow of an inbox the caller may use (and of the inbox named, if one is); else 404."""
    where = [Workflow.inbox_id.in_(select(Inbox.id).where(may_use_inbox(principal)))]
    if inbox_id is not None:
        where.append(Workflow.inbox_id == inbox_id)
    return tenancy.get_owned(db, Workflow, workflow_id, principal.tenant_id, where=tuple(where),
                             message=_NOT_FOUND, fix=_FIX)


def list_workflows(db: Session, principal: Principal, inbox_id: str | None, *, after: str | None = None,
                   limit: int = 50) -> list[Workflow]:
    """The workflows of the caller's inbox (a session: the one named, else every usable one), oldest first."""
    query = select(Workflow).where(Workflow.inbox_id.in_(select(Inbox.id).where(may_use_inbox(principal))))
    if inbox_id is not None or principal.own_inbox_id is not None:
        query = query.where(Workflow.inbox_id == inbox_for(db, principal, inbox_id).id)
    if after:
        query = query.where(Workflow.id > after)
    return list(db.scalars(tenancy.owned(query, Workflow, principal.tenant_id).order_by(Workflow.id).limit(limit)))


def update_workflow(db: Session, settings: Settings, principal: Principal, workflow_id: str, inbox_id: str | None,
                    data: WorkflowInput) -> Workflow:
    """Change the fields given; the secret stays."""
    workflow = get_workflow(db, principal, workflow_id, inbox_id)
    changed = []
    for name, value, check in (("name", data.name, _check_name), ("trigger", data.trigger, check_trigger),
                               ("conditions", data.conditions, _check_conditions),
                               ("writes", data.writes, lambda w: check_writes(db, settings, principal, w)),
                               ("enabled", data.enabled, bool)):
        if value is not None:
            setattr(workflow, name, check(value))
            changed.append(name)
    if changed:
        workflow.updated_at = utcnow()
        _announce(db, workflow, "workflow.updated", principal, {"changed": changed})
    return workflow


def delete_workflow(db: Session, principal: Principal, workflow_id: str, inbox_id: str | None = None) -> None:
    """Delete the workflow, its runs and its queued webhook actions."""
    workflow = get_workflow(db, principal, workflow_id, inbox_id)
    _announce(db, workflow, "workflow.deleted", principal)
    db.execute(delete(WorkflowDelivery).where(WorkflowDelivery.workflow_id == workflow.id))
    db.execute(delete(WorkflowRun).where(WorkflowRun.workflow_id == workflow.id))
    db.delete(workflow)


def list_runs(db: Session, principal: Principal, workflow_id: str, inbox_id: str | None, *,
              before: str | None = None, limit: int = 50) -> list[WorkflowRun]:
    """The workflow's runs, newest first."""
    workflow = get_workflow(db, principal, workflow_id, inbox_id)
    query = select(WorkflowRun).where(WorkflowRun.workflow_id == workflow.id)
    if before:
        query = query.where(WorkflowRun.id < before)
    return list(db.scalars(query.order_by(WorkflowRun.id.desc()).limit(limit)))


def _announce(db: Session, workflow: Workflow, type_: str, principal: Principal, extra: dict | None = None) -> None:
    events.emit(db, type_, tenant_id=workflow.tenant_id, inbox_id=workflow.inbox_id, resource_id=workflow.id,
                actor=principal, payload={"name": workflow.name, **(extra or {})})


# --- the dry run -------------------------------------------------------------------------------
def test_workflow(db: Session, settings: Settings, principal: Principal, workflow_id: str, inbox_id: str | None,
                  message_id: str) -> dict:
    """What the workflow would do with one message of its inbox, as if it had just arrived:
    each condition's result and each action's outcome; changes nothing."""
    from appliance.services.automation import workflow_runner
    workflow = get_workflow(db, principal, workflow_id, inbox_id)
    message = tenancy.find_owned(db, Message, workflow.tenant_id, Message.id == message_id,
                                 Message.inbox_id == workflow.inbox_id)
    if message is None:
        raise NotFoundError("No such message in the workflow's inbox.", field="message_id")
    facts = workflow_runner.facts_for(db, message, {"type": "message.received", "payload": {}})
    matched, results = conditions_.evaluate(workflow.conditions or [], facts, settings.workflow_regex_timeout)
    actions = workflow_runner.preview(db, settings, workflow, message) if matched else []
    return {"workflow_id": workflow.id, "message_id": message.id, "matched": matched, "conditions": results,
            "notes": facts.notes, "actions": actions}


# --- rendering ---------------------------------------------------------------------------------
def workflow_to_dict(workflow: Workflow, secret: str | None = None) -> dict[str, Any]:
    """The API's workflow object (the secret only in the answer that made it)."""
    out = {"workflow_id": workflow.id, "inbox_id": workflow.inbox_id, "name": workflow.name,
           "trigger": workflow.trigger, "conditions": workflow.conditions, "writes": workflow.writes,
           "enabled": workflow.enabled, "created_at": events.iso(workflow.created_at),
           "updated_at": events.iso(workflow.updated_at)}
    if secret is not None:
        out["secret"] = secret
    return out


def run_to_dict(run: WorkflowRun) -> dict[str, Any]:
    """The API's run object."""
    return {"run_id": run.id, "workflow_id": run.workflow_id, "event_id": run.event_id, "matched": run.matched,
            "status": run.status, "actions": run.actions or [], "started_at": events.iso(run.started_at)}


def describe_error(exc: Exception) -> str:
    """A run's error text for people: a typed error's message, else a generic line (logged)."""
    return exc.message[:300] if isinstance(exc, GentError) else "internal error (see the worker's log)"
