"""The worker side of workflows (issue 20): runs on the one event tailer, and the webhook sender.

Runs. A cursor named `workflows` on the event tailer (tailer.py) reads every event once. For
each event of an inbox, each enabled workflow of that inbox whose trigger takes the event (and
that existed when it happened) runs once: a `workflow_runs` row unique on (workflow, event) is
written in the same transaction as the run's local effects (labels, mark read, task), the sends
it made through the one send path (outbound.send: caps, approvals, DKIM, the Sent copy) and its
queued webhook actions, and the cursor moves in that transaction too. A worker killed mid-batch
leaves none of it, and the next worker runs the batch again: every run completes once and no
action happens twice. Each run is a savepoint and each action a nested one: a failed action is
recorded with its error and the others stand.

Who acts: the workflow, as Principal kind `workflow` bound to its inbox (events name
`actor.kind = workflow`; the audit log gets one entry per matched run under
`audit.scope("workflow", ...)`). Its sends are held for approval when the inbox's agents' are
(a token of the inbox holds email:send) or when the workflow has a `hold` action. Events caused
by a workflow never trigger workflows: no chain of workflows can loop.

Loop safety (RFC 3834, docs/workflows.md): `email.reply` uses autoreply.py's rules (no reply to
automated, bulk or list mail, a null sender, robots or the appliance's own addresses), at most
one per sender per workflow per 24 h, with `Auto-Submitted: auto-replied`. `email.forward`
sends a new message carrying `X-Gentbox-Loop: hops=N; boxes=<hostnames>`; a message that
already names this appliance in that header, or has made workflow_forward_max_hops hops, is
not forwarded: two appliances forwarding to each other stop after one hop each.

Webhooks. A `webhook` action is a `workflow_deliveries` row written with the run; the worker
sends due rows (Standard Webhooks signing with the workflow's `whsec_` secret, the alerts'
address checks and retry schedule: webhooks.py), leased so a killed worker's rows are sent by
the next one (at least once, one `webhook-id` per action; receivers dedupe on it).
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Resolver
from appliance.errors import GentError
from appliance.ids import new_id
from appliance.models import (AgentToken, Attachment, AutoReplyWindow, Event, Inbox, Label, Message, MessageRaw,
                              Template, Workflow, WorkflowDelivery, WorkflowRun)
from appliance.services.automation import events, tailer, webhooks
from appliance.services.automation import workflow_conditions as conditions_
from appliance.services.automation.event_types import EVENT_TYPES
from appliance.services.automation.workflows import TRIGGER_TYPES, describe_error, secret_of
from appliance.services.governance import audit
from appliance.services.identity.auth import Principal
from appliance.services.mail import autoreply, compose, messages, outbound
from appliance.services.team import templates
from appliance.services.workspace import tasks

log = logging.getLogger("gentbox.workflows")
TAILER = "workflows"
BATCH = 200
REPLY_WINDOW = dt.timedelta(hours=24)
LOOP_HEADER = "X-Gentbox-Loop"
SCOPES = ("email:read", "email:write", "email:send", "labels:write", "task:write")
WEBHOOK_RETRIES = 5
_LOOP = re.compile(r"hops=(\d{1,3})\s*;\s*boxes=([^;]*)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{([a-z_.]{1,40})\}")


# --- the tailer --------------------------------------------------------------------------------
def tail(db: Session, settings: Settings, *, batch: int = BATCH) -> int:
    """Run the workflows of the next events after the cursor and move it, in the caller's
    transaction; returns how many events were read (call again while it returns batch)."""
    cache: dict[str, list[Workflow]] = {}

    def handle(event: Event) -> None:
        if event.inbox_id is None or event.actor_kind == "workflow" or event.category == "workflows":
            return
        if event.inbox_id not in cache:
            cache[event.inbox_id] = list(db.scalars(select(Workflow).where(
                Workflow.inbox_id == event.inbox_id, Workflow.enabled.is_(True)).order_by(Workflow.id)))
        for workflow in cache[event.inbox_id]:
            if triggered(workflow, event) and event.occurred_at >= workflow.created_at:
                run(db, settings, workflow, event)
    return tailer.tail(db, TAILER, handle, types=EVENT_TYPES, batch=batch)


def triggered(workflow: Workflow, event: Event) -> bool:
    """Does the workflow's trigger take this event?"""
    trigger = workflow.trigger or {}
    wanted = trigger.get("event_type") if trigger.get("type") == "event" else TRIGGER_TYPES.get(trigger.get("type"))
    return event.type == wanted


@dataclass
class Run:
    """One run in progress: what the actions act on and as whom."""

    db: Session
    settings: Settings
    workflow: Workflow
    inbox: Inbox
    event: Event
    row: WorkflowRun
    message: Message | None
    facts: conditions_.Facts
    principal: Principal


def run(db: Session, settings: Settings, workflow: Workflow, event: Event) -> WorkflowRun | None:
    """Run one workflow on one event, once: None when it already ran (the unique run row)."""
    actor = audit.Actor("workflow", workflow.id, workflow.name)
    with audit.scope("workflow", actor, workflow.tenant_id) as current, events.acting_as(workflow.id):
        try:
            with db.begin_nested():
                return _run(db, settings, workflow, event, current)
        except IntegrityError:
            return None  # it ran already (another worker, or before a restart): nothing twice
        except Exception as exc:  # noqa: BLE001 - one bad run must not hold up every inbox's cursor
            log.exception("workflow %s on event %s failed", workflow.id, event.id)
            with db.begin_nested():
                return _record(db, workflow, event, matched=True, status="failed",
                               actions=[{"type": "run", "outcome": "failed", "error": describe_error(exc)}])


def _record(db: Session, workflow: Workflow, event: Event, *, matched: bool, status: str,
            actions: list[dict]) -> WorkflowRun:
    row = WorkflowRun(id=new_id("run"), tenant_id=workflow.tenant_id, workflow_id=workflow.id, event_id=event.id,
                      event_seq=event.seq, matched=matched, status=status, actions=actions, started_at=utcnow())
    db.add(row)
    db.flush()  # the unique (workflow, event) key is checked here, before any effect
    return row


def _run(db: Session, settings: Settings, workflow: Workflow, event: Event, current: audit.Scope) -> WorkflowRun:
    row = _record(db, workflow, event, matched=False, status="skipped", actions=[])
    message = message_of(db, event)
    facts = facts_for(db, message, {"type": event.type, "payload": event.payload or {}})
    matched, _ = conditions_.evaluate(workflow.conditions or [], facts, settings.workflow_regex_timeout)
    if not matched:
        row.actions = [{"type": "conditions", "outcome": "not_matched", "error": note} for note in facts.notes]
        return row
    inbox = db.get(Inbox, workflow.inbox_id)
    state = Run(db, settings, workflow, inbox, event, row, message, facts, _principal(db, workflow))
    results = [_act(state, index, write.get("target") or {}) for index, write in enumerate(workflow.writes or [])]
    row.matched, row.actions = True, results
    row.status = "failed" if any(r["outcome"] == "failed" for r in results) else "completed"
    events.emit(db, "workflow.run_failed" if row.status == "failed" else "workflow.run_completed", tenant_id=workflow.tenant_id, inbox_id=workflow.inbox_id,
                resource_id=row.id, payload={"workflow_id": workflow.id, "event_id": event.id,
                                             "message_id": message.id if message else None, "actions": results})
    audit.record_scope(db, settings.secret_key, current, action="workflow.run", resource_type="workflow",
                       resource_id=workflow.id, changes={"run_id": row.id, "event_id": event.id,
                                                         "actions": [f"{r['type']}: {r['outcome']}" for r in results]})
    return row


def _principal(db: Session, workflow: Workflow) -> Principal:
    """The workflow acting in its inbox; its sends held when the inbox's are, or when it holds."""
    held = any((w.get("target") or {}).get("type") == "hold" for w in workflow.writes or [])
    if not held:
        tokens = db.scalars(select(AgentToken.requires_approval).where(AgentToken.inbox_id == workflow.inbox_id,
                                                                       AgentToken.status == "active"))
        held = any("email:send" in (scopes or []) for scopes in tokens)
    return Principal.workflow(workflow.tenant_id, workflow.id, workflow.inbox_id, SCOPES,
                              requires_approval=("email:send",) if held else ())


# --- facts -------------------------------------------------------------------------------------
def message_of(db: Session, event: Event) -> Message | None:
    """The message an event is about: its resource, or a thread's latest message."""
    rid = event.resource_id or ""
    if rid.startswith("msg_"):
        return db.scalar(select(Message).where(Message.id == rid, Message.inbox_id == event.inbox_id))
    thread_id = rid if rid.startswith("thr_") else (event.payload or {}).get("thread_id")
    if isinstance(thread_id, str) and thread_id:
        return db.scalar(select(Message).where(Message.thread_id == thread_id, Message.inbox_id == event.inbox_id)
                         .order_by(Message.created_at.desc(), Message.id.desc()).limit(1))
    return None


def facts_for(db: Session, message: Message | None, event: dict) -> conditions_.Facts:
    """The condition fields of an event and its message (headers parsed only when asked for)."""
    values: dict[str, Any] = {"type": event["type"], "payload": event.get("payload") or {}}
    if message is None:
        return conditions_.Facts(values)
    sender = (message.from_email or "").lower()
    label_ids = list(db.scalars(select(Label.id).where(Label.inbox_id == message.inbox_id,
                                                       Label.name.in_(message.labels or []))))
    if values["payload"].get("label_id") and values["payload"]["label_id"] not in label_ids:
        label_ids.append(values["payload"]["label_id"])
    enrichment = getattr(message, "enrichment", None) or {}
    values.update({
        "from_address": sender, "from_domain": sender.rpartition("@")[2] if "@" in sender else None,
        "to_address": [a.get("email", "").lower() for a in (message.to_addrs or []) + (message.cc_addrs or [])
                       if a.get("email")] + ([message.envelope_to.lower()] if message.envelope_to else []),
        "subject": message.subject or "", "body": message.text_body or "", "has_attachments": message.has_attachments,
        "label_id": label_ids, "authentication.dmarc": messages.authentication_of(message)["dmarc"],
        "enrichment.phishing": enrichment.get("phishing") if isinstance(enrichment, dict) else None,
        "from_name": message.from_name or ""})
    return conditions_.Facts(values, headers=lambda: _headers(db, message.id))


def _headers(db: Session, message_id: str):  # noqa: ANN202 - an email.message.Message or None
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message_id))
    return autoreply.headers_of(bytes(raw)) if raw is not None else None


# --- actions -----------------------------------------------------------------------------------
def _act(state: Run, index: int, target: dict) -> dict:
    """One action in its own savepoint: {type, outcome, error}; a failure undoes only itself."""
    kind = target.get("type", "")
    try:
        with state.db.begin_nested():
            outcome, note = _ACTIONS[kind](state, index, target)
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the other actions go on
        if not isinstance(exc, GentError):
            log.exception("workflow %s: action %s failed", state.workflow.id, kind)
        outcome, note = "failed", describe_error(exc)
    return {"type": kind, "outcome": outcome, "error": note}


def _needs_message(state: Run) -> Message:
    if state.message is None:
        raise GentError("The event is about no message, so there is nothing to act on.")
    return state.message


def _label(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    message = _needs_message(state)
    names = list(message.labels or [])
    name = target["label"]
    if (name in names) == (target["type"] == "email.add_label"):
        return "unchanged", None
    names = names + [name] if name not in names else [n for n in names if n != name]
    messages.update_message(state.db, state.inbox, message.id, labels=names, actor=state.workflow.id)
    return "done", None


def _mark_read(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    message = _needs_message(state)
    if message.is_read:
        return "unchanged", None
    messages.update_message(state.db, state.inbox, message.id, is_read=True, actor=state.workflow.id)
    return "done", None


def _task(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    data: dict[str, Any] = {"summary": fill(target["summary"], state.facts)[:500] or state.workflow.name}
    if state.message is not None:
        data["related"] = {"type": "message", "id": state.message.id}
    task = tasks.create_task(state.db, state.principal, state.inbox.id, data)
    return "done", task.id


def _hold(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    # The principal already holds email:send for the whole run (_principal): its replies and
    # forwards wait for a person's approval whatever the order of the actions.
    return "held", None


def fill(text: str, facts: conditions_.Facts) -> str:
    """`{field}` replaced by the condition field's value (unknown ones stay as written)."""
    def one(match: re.Match) -> str:
        value = facts.get(match.group(1))
        if value is conditions_.MISSING or isinstance(value, (dict, list)):
            return match.group(0)
        return str(value).replace("\r", " ").replace("\n", " ")
    return _PLACEHOLDER.sub(one, text or "")


def _reply(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    message = _needs_message(state)
    reason = reply_refused(state.db, state.settings, message)
    if reason is not None:
        return "skipped", reason
    sender = autoreply.sender_of(message.envelope_from)
    if not autoreply.claim_window(state.db, tenant_id=message.tenant_id, inbox_id=message.inbox_id, sender=sender,
                                  purpose=_purpose(state.workflow), now=utcnow(), window=REPLY_WINDOW):
        return "skipped", "this workflow answered the sender within 24 h"
    subject, text_body, html_body = _reply_content(state, target, message)
    request = compose.SendRequest(to=[compose.Recipient(sender)], subject=subject, text_body=text_body,
                                  html_body=html_body, reply_to_message_id=message.id,
                                  headers={"Auto-Submitted": autoreply.AUTO_SUBMITTED,
                                           "X-Auto-Response-Suppress": "All"})
    sent = outbound.send(state.db, state.settings, state.principal, state.inbox, request)
    return ("held" if sent.status == "held" else "queued"), sent.id


def _purpose(workflow: Workflow) -> str:
    return f"workflow:{workflow.id}"


def reply_refused(db: Session, settings: Settings, message: Message) -> str | None:
    """Why a workflow must not answer this message automatically (RFC 3834), or None."""
    if message.direction != "inbound":
        return "only received mail is answered"
    headers = _headers(db, message.id)
    if headers is None:
        return "the message's raw form is gone"
    return autoreply.why_not(db, headers, message.envelope_from, hostname=settings.hostname)


def _reply_content(state: Run, target: dict, message: Message) -> tuple[str, str | None, str | None]:
    if target.get("template_id"):
        template = templates.get_template(state.db, state.principal, target["template_id"])
        name = message.from_name or message.from_email
        values = {"name": name, "first_name": name.split(" ")[0], "from_address": message.from_email,
                  "from_name": message.from_name, "email": message.from_email, "subject": message.subject}
        rendered = templates.render(template, values)
        return (rendered["subject"] or compose.reply_subject(message.subject or ""), rendered["text_body"] or None,
                rendered["html_body"] or None)
    subject = fill(target.get("subject") or "", state.facts) or compose.reply_subject(message.subject or "")
    return subject, fill(target.get("text_body") or "", state.facts), None


def loop_state(headers: Any) -> tuple[int, list[str]]:
    """The hops and the appliances named by a message's X-Gentbox-Loop headers."""
    hops, boxes = 0, []
    for value in (headers.get_all(LOOP_HEADER) or []) if headers is not None else []:
        for found in _LOOP.finditer(str(value)):
            hops = max(hops, int(found.group(1)))
            boxes += [b.lower() for b in found.group(2).split()]
    return hops, boxes


def forward_refused(db: Session, settings: Settings, message: Message) -> str | None:
    """Why a workflow must not forward this message (a loop), or None."""
    hops, boxes = loop_state(_headers(db, message.id))
    if settings.hostname.lower() in boxes:
        return "this appliance forwarded the message before (X-Gentbox-Loop): a forwarding loop"
    if hops >= settings.workflow_forward_max_hops:
        return f"the message was forwarded {hops} times already"
    return None


def _forward(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    message = _needs_message(state)
    reason = forward_refused(state.db, state.settings, message)
    if reason is not None:
        return "skipped", reason
    hops, boxes = loop_state(_headers(state.db, message.id))
    loop = f"hops={hops + 1}; boxes={' '.join([*boxes, state.settings.hostname.lower()])}"
    request = compose.SendRequest(to=[compose.Recipient(target["to"])], subject=_fwd_subject(message.subject or ""),
                                  text_body=_forward_text(message), attachments=_attachments(state.db, message),
                                  headers={LOOP_HEADER: loop})
    sent = outbound.send(state.db, state.settings, state.principal, state.inbox, request)
    return ("held" if sent.status == "held" else "queued"), sent.id


def _fwd_subject(subject: str) -> str:
    return subject if subject.lower().startswith("fwd:") else f"Fwd: {subject}".strip()


def _forward_text(message: Message) -> str:
    sender = f"{message.from_name} <{message.from_email}>" if message.from_name else message.from_email
    to = ", ".join(a.get("email", "") for a in message.to_addrs or [])
    return ("---------- Forwarded message ----------\n"
            f"From: {sender}\nDate: {message.date_header}\nSubject: {message.subject}\nTo: {to}\n\n"
            f"{message.text_body or ''}")


def _attachments(db: Session, message: Message) -> list[dict]:
    rows = db.scalars(select(Attachment).where(Attachment.message_id == message.id,
                                               Attachment.disposition == "attachment").order_by(Attachment.id))
    return [{"filename": a.filename, "content_type": a.content_type,
             "content_base64": base64.b64encode(messages.attachment_bytes(db, a)).decode()} for a in rows]


def _webhook(state: Run, index: int, target: dict) -> tuple[str, str | None]:
    now = utcnow()
    zone = messages.zone_of(state.inbox)
    data = {"type": target.get("event_type") or "workflow.webhook", "workflow_id": state.workflow.id,
            "run_id": state.row.id, "event": events.event_to_dict(state.event),
            "message": messages.message_to_summary(state.message, zone) if state.message is not None else None}
    state.db.add(WorkflowDelivery(
        id=new_id("dlv"), tenant_id=state.workflow.tenant_id, workflow_id=state.workflow.id, run_id=state.row.id,
        action_index=index, url=target["url"], data=data, webhook_id=f"msg_{state.row.id}_{index}", attempt=0,
        status="pending", next_attempt_at=now, created_at=now, updated_at=now))
    return "queued", None


_ACTIONS = {"email.add_label": _label, "email.remove_label": _label, "email.mark_read": _mark_read,
            "task": _task, "hold": _hold, "email.reply": _reply, "email.forward": _forward, "webhook": _webhook}


# --- the dry run -------------------------------------------------------------------------------
def preview(db: Session, settings: Settings, workflow: Workflow, message: Message) -> list[dict]:
    """What each action would do with this message (the dry run), changing nothing."""
    held = _principal(db, workflow).requires_approval
    out = []
    for write in workflow.writes or []:
        target = write.get("target") or {}
        kind, reason = target.get("type"), None
        if kind == "email.reply":
            reason = reply_refused(db, settings, message) or _answered_lately(db, workflow, message)
            if not reason and target.get("template_id") and db.get(Template, target["template_id"]) is None:
                reason = "the template no longer exists"
        elif kind == "email.forward":
            reason = forward_refused(db, settings, message)
        outcome = "skipped" if reason else ("held" if kind in ("email.reply", "email.forward", "hold") and held
                                            else "would_run")
        out.append({"type": kind, "outcome": outcome, "error": reason})
    return out


def _answered_lately(db: Session, workflow: Workflow, message: Message) -> str | None:
    last = db.scalar(select(AutoReplyWindow.last_sent_at).where(
        AutoReplyWindow.inbox_id == message.inbox_id, AutoReplyWindow.purpose == _purpose(workflow),
        AutoReplyWindow.sender == autoreply.sender_of(message.envelope_from)))
    if last is not None and last > utcnow() - REPLY_WINDOW:
        return "this workflow answered the sender within 24 h"
    return None


# --- webhook deliveries ------------------------------------------------------------------------
def send_due(store: Store, settings: Settings, resolver: Resolver, owner: str, *, limit: int = 50) -> int:
    """Send the due webhook actions (claimed under a lease), record each outcome; returns how
    many were attempted."""
    with store.session() as db:
        claimed = _claim(db, owner, limit, dt.timedelta(seconds=settings.webhook_timeout * 2 + 30))
        jobs = [(row.id, row.url, row.webhook_id, row.data, secret_of(settings, db.get(Workflow, row.workflow_id)))
                for row in db.scalars(select(WorkflowDelivery).where(WorkflowDelivery.id.in_(claimed)))]
    for delivery_id, url, webhook_id, data, secret in jobs:
        now = utcnow()
        body = webhooks.body_for(data, now)
        headers = webhooks.headers_for([secret] if secret else [], webhook_id, now, body)
        result = webhooks.send(settings, resolver, url, headers, body, now)
        # Recorded at once: a worker killed now sends again only the one attempt in flight.
        with store.session() as db:
            _record_attempt(db, owner, delivery_id, result)
    return len(jobs)


def _claim(db: Session, owner: str, limit: int, lease: dt.timedelta) -> list[str]:
    now = utcnow()
    free = or_(WorkflowDelivery.claimed_until.is_(None), WorkflowDelivery.claimed_until < now)
    query = (select(WorkflowDelivery.id).where(WorkflowDelivery.status.in_(("pending", "failed")),
                                               WorkflowDelivery.next_attempt_at <= now, free)
             .order_by(WorkflowDelivery.next_attempt_at).limit(limit))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    picked = list(db.scalars(query))
    if not picked:
        return []
    claimed = db.execute(update(WorkflowDelivery).where(WorkflowDelivery.id.in_(picked), free)
                         .values(claimed_by=owner, claimed_until=now + lease).returning(WorkflowDelivery.id)
                         .execution_options(synchronize_session=False))
    return list(claimed.scalars())


def _record_attempt(db: Session, owner: str, delivery_id: str, result: webhooks.Result) -> None:
    """One attempt's outcome, only while the lease is still owner's; the run's action follows it."""
    row = db.scalar(select(WorkflowDelivery).where(WorkflowDelivery.id == delivery_id,
                                                   WorkflowDelivery.claimed_by == owner))
    if row is None:
        return
    now = utcnow()
    row.attempt, row.response_status, row.updated_at = row.attempt + 1, result.status, now
    row.claimed_by = row.claimed_until = None
    if result.ok:
        row.status, row.error, row.next_attempt_at = "succeeded", None, None
    else:
        later = None if result.gone else webhooks.next_attempt("exponential", WEBHOOK_RETRIES, row.attempt, now,
                                                              result.retry_after)
        row.status, row.error, row.next_attempt_at = ("failed" if later else "exhausted"), result.error, later
    outcome = {"succeeded": "delivered", "exhausted": "failed"}.get(row.status, "retrying")
    run_row = db.get(WorkflowRun, row.run_id)
    if run_row is not None and row.action_index < len(run_row.actions or []):
        actions = [dict(a) for a in run_row.actions]
        actions[row.action_index].update(outcome=outcome, error=row.error)
        run_row.actions = actions
