"""Follow-up sequences (issue 20.5, contract section 14): timed emails to one contact, in one
thread, that stop when the contact replies.

A sequence (`seq_`) belongs to its sender inbox and holds `emails`, each sent `delay_days` after
the one before it (the first `delay_days` after enrollment; 0: at once), at the same wall-clock
time in the inbox's zone (so a step never moves an hour across a daylight-saving change). An
enrollment (`sqe_`) is one contact's way through it: its next step is one row in the schedule
(schedule.plan, key `sequence:<enrollment>`, event `sequence.step_due`), never a timer of its own.

The worker reads the event table through the tailer (cursor `sequences`): a due step is sent
through the one send path (outbound.send, acting as a `workflow` principal named by the
sequence, so caps, sender rules and approvals apply) as a reply to the enrollment's last step,
which keeps every step in the contact's thread; mail received from the contact (or in the thread)
ends the enrollment when `exit_on_reply` (automated mail such as out-of-office replies does not
count), a bounce of one of its steps ends it, and so does an unsubscribe (checked before each
step). Ended enrollments keep their row, with `status` and `exit_reason`.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError, GentError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import (AgentToken, Contact, Event, Inbox, Message, MessageRaw, Sequence, SequenceEnrollment,
                              Template, Unsubscribe)
from appliance.services import tenancy
from appliance.services.automation import events, schedule, tailer
from appliance.services.identity.auth import Principal, inbox_for, usable_inbox
from appliance.services.mail import compose, mime, outbound
from appliance.services.team import templates
from appliance.services.validation import reject_control_chars
from appliance.services.workspace import contacts

log = logging.getLogger("gentbox.sequences")
TAILER = "sequences"
BATCH = 200
STEP_DUE = "sequence.step_due"
MAX_STEPS = 20
MAX_DELAY_DAYS = 365
FIELDS = ("name", "sender_inbox_id", "exit_on_reply", "emails")
EMAIL_FIELDS = ("delay_days", "subject", "body", "template_id")


# --- validation -----------------------------------------------------------------------------
def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValidationError("name: 1 to 200 characters", field="name")
    return reject_control_chars(value, "name").strip()


def _email(db: Session, tenant_id: str, index: int, item: Any) -> dict[str, Any]:
    where = f"emails[{index}]"
    if not isinstance(item, dict):
        raise ValidationError(f"{where}: must be an object", field=where)
    unknown = set(item) - set(EMAIL_FIELDS)
    if unknown:
        raise ValidationError(f"{where}.{sorted(unknown)[0]}: unknown field; accepted: {', '.join(EMAIL_FIELDS)}",
                              field=f"{where}.{sorted(unknown)[0]}")
    delay = item.get("delay_days", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_DAYS:
        raise ValidationError(f"{where}.delay_days: a whole number of days from 0 to {MAX_DELAY_DAYS}",
                              field=f"{where}.delay_days")
    subject, body, template_id = item.get("subject"), item.get("body"), item.get("template_id")
    if template_id is not None:
        if not isinstance(template_id, str) or tenancy.find_owned(db, Template, tenant_id,
                                                                  Template.id == template_id) is None:
            raise NotFoundError("No such template.", field=f"{where}.template_id")
    elif not isinstance(body, str) or not body.strip():
        raise ValidationError(f"{where}.body: a step needs a body or a template_id", field=f"{where}.body",
                              fix="Send body (plain text), or template_id of a reply template.")
    if subject is not None and (not isinstance(subject, str) or len(subject) > 300):
        raise ValidationError(f"{where}.subject: at most 300 characters", field=f"{where}.subject")
    if subject is not None:
        reject_control_chars(subject, f"{where}.subject")  # it goes into a header
    if index == 0 and template_id is None and not (subject or "").strip():
        raise ValidationError(f"{where}.subject: the first step needs a subject (later ones answer in its thread)",
                              field=f"{where}.subject")
    if body is not None and (not isinstance(body, str) or len(body) > 100_000):
        raise ValidationError(f"{where}.body: at most 100000 characters", field=f"{where}.body")
    return {"delay_days": delay, "subject": (subject or "").strip() or None, "body": body,
            "template_id": template_id}


def _emails(db: Session, tenant_id: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STEPS:
        raise ValidationError(f"emails: a list of 1 to {MAX_STEPS} steps", field="emails")
    return [_email(db, tenant_id, i, item) for i, item in enumerate(value)]


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field}: must be true or false", field=field)
    return value


# --- sequences ------------------------------------------------------------------------------
def create(db: Session, principal: Principal, *, name: Any = None, sender_inbox_id: str | None = None,
           exit_on_reply: Any = True, emails: Any = None) -> Sequence:
    """POST /v1/sequences/ (and recipes): a sequence sent from sender_inbox_id (an agent: its own)."""
    inbox = inbox_for(db, principal, sender_inbox_id)
    now = utcnow()
    sequence = Sequence(id=new_id("seq"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, name=_name(name),
                        exit_on_reply=_bool(exit_on_reply, "exit_on_reply"),
                        emails=_emails(db, inbox.tenant_id, emails), created_at=now, updated_at=now)
    db.add(sequence)
    db.flush()
    events.emit(db, "sequence.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=sequence.id,
                actor=principal, payload={"name": sequence.name, "steps": len(sequence.emails)})
    return sequence


def _visible(principal: Principal):  # noqa: ANN202 - a SQL condition
    own = principal.own_inbox_id
    return Sequence.inbox_id == own if own is not None else Sequence.inbox_id.is_not(None)


def get(db: Session, principal: Principal, sequence_id: str, *, for_update: bool = False) -> Sequence:
    """One sequence of an inbox the caller may use; 404 otherwise."""
    sequence = tenancy.get_owned(db, Sequence, sequence_id, principal.tenant_id, where=(_visible(principal),),
                                 message="No such sequence.", for_update=for_update)
    usable_inbox(db, principal, sequence.inbox_id)  # a member without the inbox: 404 as well
    return sequence


def list_sequences(db: Session, principal: Principal, inbox_id: str | None) -> list[Sequence]:
    """The inbox's sequences, oldest first."""
    inbox = inbox_for(db, principal, inbox_id)
    return list(db.scalars(select(Sequence).where(Sequence.inbox_id == inbox.id).order_by(Sequence.id)))


def update(db: Session, principal: Principal, sequence_id: str, changes: dict[str, Any]) -> Sequence:
    """PATCH /v1/sequences/{id}/: name, exit_on_reply, emails (active enrollments go on with the new steps)."""
    sequence = get(db, principal, sequence_id, for_update=True)
    unknown = set(changes) - {"name", "exit_on_reply", "emails"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: cannot be changed", field=sorted(unknown)[0])
    if "name" in changes:
        sequence.name = _name(changes["name"])
    if "exit_on_reply" in changes:
        sequence.exit_on_reply = _bool(changes["exit_on_reply"], "exit_on_reply")
    if "emails" in changes:
        sequence.emails = _emails(db, sequence.tenant_id, changes["emails"])
    sequence.updated_at = utcnow()
    events.emit(db, "sequence.updated", tenant_id=sequence.tenant_id, inbox_id=sequence.inbox_id,
                resource_id=sequence.id, actor=principal, payload={"changed": sorted(changes)})
    return sequence


def delete(db: Session, principal: Principal, sequence_id: str) -> None:
    """DELETE /v1/sequences/{id}/: its active enrollments are cancelled, then it goes."""
    sequence = get(db, principal, sequence_id, for_update=True)
    for enrollment in db.scalars(select(SequenceEnrollment).where(SequenceEnrollment.sequence_id == sequence.id,
                                                                  SequenceEnrollment.status == "active")):
        _end(db, enrollment, "cancelled", None, actor=principal)
    db.execute(SequenceEnrollment.__table__.delete().where(SequenceEnrollment.sequence_id == sequence.id))
    events.emit(db, "sequence.deleted", tenant_id=sequence.tenant_id, inbox_id=sequence.inbox_id,
                resource_id=sequence.id, actor=principal, payload={"name": sequence.name})
    db.delete(sequence)


def to_dict(db: Session, sequence: Sequence) -> dict[str, Any]:
    """The API's sequence object, with its enrollment counts by status."""
    counts: dict[str, int] = {}
    for status in db.scalars(select(SequenceEnrollment.status).where(SequenceEnrollment.sequence_id == sequence.id)):
        counts[status] = counts.get(status, 0) + 1
    return {"sequence_id": sequence.id, "name": sequence.name, "sender_inbox_id": sequence.inbox_id,
            "exit_on_reply": sequence.exit_on_reply, "emails": list(sequence.emails or []),
            "enrollments": counts, "created_at": sequence.created_at.isoformat(),
            "updated_at": sequence.updated_at.isoformat()}


# --- enrollments ----------------------------------------------------------------------------
def enroll(db: Session, principal: Principal, sequence_id: str, contact_id: Any) -> SequenceEnrollment:
    """POST /v1/sequences/{id}/enrollments/: the contact's first step is planned (at once for delay 0)."""
    sequence = get(db, principal, sequence_id, for_update=True)
    inbox = db.get(Inbox, sequence.inbox_id)
    if not isinstance(contact_id, str):
        raise ValidationError("contact_id: required", field="contact_id")
    contact = contacts.get_contact(db, inbox, contact_id)
    addresses = contacts.emails_of(db, contact)
    if not addresses:
        raise ValidationError("contact_id: the contact has no email address to write to", field="contact_id",
                              fix="Add an address to the contact (PATCH /v1/contacts/{id}/).")
    if db.scalar(select(SequenceEnrollment.id).where(SequenceEnrollment.sequence_id == sequence.id,
                                                     SequenceEnrollment.contact_id == contact.id,
                                                     SequenceEnrollment.status == "active")):
        raise ConflictError("The contact is already enrolled in this sequence.", field="contact_id",
                            fix="Cancel the active enrollment first (DELETE /v1/sequences/{id}/enrollments/{id}/).")
    now = utcnow()
    enrollment = SequenceEnrollment(id=new_id("sqe"), tenant_id=sequence.tenant_id, inbox_id=inbox.id,
                                    sequence_id=sequence.id, contact_id=contact.id, address=addresses[0]["address"],
                                    status="active", next_step=0, created_at=now, updated_at=now)
    db.add(enrollment)
    db.flush()
    _plan_step(db, enrollment, sequence, after=now)
    events.emit(db, "sequence.enrolled", tenant_id=sequence.tenant_id, inbox_id=inbox.id,
                resource_id=enrollment.id, actor=principal,
                payload={"sequence_id": sequence.id, "contact_id": contact.id})
    return enrollment


def get_enrollment(db: Session, principal: Principal, sequence_id: str, enrollment_id: str) -> SequenceEnrollment:
    """One enrollment of a sequence the caller may use; 404 otherwise."""
    sequence = get(db, principal, sequence_id)
    return tenancy.get_owned(db, SequenceEnrollment, enrollment_id, principal.tenant_id,
                             where=(SequenceEnrollment.sequence_id == sequence.id,), message="No such enrollment.")


def list_enrollments(db: Session, principal: Principal, sequence_id: str) -> list[SequenceEnrollment]:
    """A sequence's enrollments, oldest first."""
    sequence = get(db, principal, sequence_id)
    return list(db.scalars(select(SequenceEnrollment).where(SequenceEnrollment.sequence_id == sequence.id)
                           .order_by(SequenceEnrollment.id)))


def cancel(db: Session, principal: Principal, sequence_id: str, enrollment_id: str) -> SequenceEnrollment:
    """DELETE …/enrollments/{id}/: no further step is sent (an ended one stays as it ended)."""
    enrollment = get_enrollment(db, principal, sequence_id, enrollment_id)
    if enrollment.status == "active":
        _end(db, enrollment, "cancelled", None, actor=principal)
    return enrollment


def enrollment_to_dict(enrollment: SequenceEnrollment) -> dict[str, Any]:
    """The API's enrollment object."""
    return {"enrollment_id": enrollment.id, "sequence_id": enrollment.sequence_id,
            "contact_id": enrollment.contact_id, "address": enrollment.address, "status": enrollment.status,
            "exit_reason": enrollment.exit_reason, "next_step": enrollment.next_step,
            "thread_id": enrollment.thread_id, "last_message_id": enrollment.last_message_id,
            "created_at": enrollment.created_at.isoformat(), "updated_at": enrollment.updated_at.isoformat(),
            "ended_at": enrollment.ended_at.isoformat() if enrollment.ended_at else None}


def active_for_contact(db: Session, contact_id: str) -> list[dict[str, Any]]:
    """The contact's `active_sequences`: [{sequence_id, name, enrollment_id, next_step}]."""
    rows = db.execute(select(Sequence.id, Sequence.name, SequenceEnrollment.id, SequenceEnrollment.next_step)
                      .join(Sequence, Sequence.id == SequenceEnrollment.sequence_id)
                      .where(SequenceEnrollment.contact_id == contact_id, SequenceEnrollment.status == "active")
                      .order_by(SequenceEnrollment.id))
    return [{"sequence_id": s, "name": n, "enrollment_id": e, "next_step": step} for s, n, e, step in rows]


# --- timing ---------------------------------------------------------------------------------
def step_time(after: dt.datetime, delay_days: int, zone: dt.tzinfo) -> dt.datetime:
    """`after` plus delay_days at the same wall-clock time in zone, in UTC."""
    local = after.astimezone(zone).replace(tzinfo=None) + dt.timedelta(days=delay_days)
    return local.replace(tzinfo=zone).astimezone(dt.timezone.utc)


def _plan_step(db: Session, enrollment: SequenceEnrollment, sequence: Sequence, *, after: dt.datetime) -> None:
    steps = sequence.emails or []
    if enrollment.next_step >= len(steps):
        _end(db, enrollment, "completed", None, actor=events.WORKER)
        return
    zone = contacts.zone_of(db, db.get(Inbox, enrollment.inbox_id))
    due = step_time(after, steps[enrollment.next_step]["delay_days"], zone)
    schedule.plan(db, tenant_id=enrollment.tenant_id, inbox_id=enrollment.inbox_id, key=_key(enrollment),
                  source="sequence", event_type=STEP_DUE, due_at=due, resource_id=enrollment.id,
                  payload={"sequence_id": sequence.id, "step": enrollment.next_step})


def _key(enrollment: SequenceEnrollment) -> str:
    return f"sequence:{enrollment.id}"


def _end(db: Session, enrollment: SequenceEnrollment, status: str, reason: str | None, *, actor: Any) -> None:
    now = utcnow()
    enrollment.status = "completed" if status == "completed" else ("cancelled" if status == "cancelled" else "exited")
    enrollment.exit_reason, enrollment.ended_at, enrollment.updated_at = reason, now, now
    schedule.cancel(db, _key(enrollment))
    events.emit(db, "sequence.ended", tenant_id=enrollment.tenant_id, inbox_id=enrollment.inbox_id,
                resource_id=enrollment.id, actor=actor,
                payload={"sequence_id": enrollment.sequence_id, "contact_id": enrollment.contact_id,
                         "status": enrollment.status, "exit_reason": reason})


# --- the worker -----------------------------------------------------------------------------
def tail(db: Session, settings: Settings, *, batch: int = BATCH) -> int:
    """Send due steps and end enrollments on replies and bounces, after the cursor; returns how many
    events were read (call again while it returns batch)."""
    exits: list[bool] = []  # read once per batch, at its first received message

    def handle(event: Event) -> None:
        if event.type == "message.received":
            if not exits:
                exits.append(_any_exit_on_reply(db))
            if not exits[0]:
                return  # no enrollment anywhere that a reply ends: nothing to look up per message
        elif event.type == STEP_DUE:
            exits.clear()  # a step sent makes its enrollment one that a reply ends: ask again
        try:
            with db.begin_nested():
                if event.type == STEP_DUE:
                    _step_due(db, settings, event)
                elif event.type == "message.received":
                    _received(db, event)
                else:
                    _bounced(db, event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the cursor for every inbox
            log.exception("sequences: handling %s %s failed", event.type, event.id)
    return tailer.tail(db, TAILER, handle, types=(STEP_DUE, "message.received", "message.bounced"), batch=batch)


def _step_due(db: Session, settings: Settings, event: Event) -> None:
    enrollment = db.get(SequenceEnrollment, event.resource_id or "")
    step = (event.payload or {}).get("step")
    if enrollment is None or enrollment.status != "active" or enrollment.next_step != step:
        return  # ended, cancelled or already past this step
    sequence, inbox = db.get(Sequence, enrollment.sequence_id), db.get(Inbox, enrollment.inbox_id)
    if db.scalar(select(Unsubscribe.id).where(Unsubscribe.inbox_id == inbox.id,
                                              Unsubscribe.address == enrollment.address.lower())):
        _end(db, enrollment, "exited", "unsubscribed", actor=events.WORKER)
        return
    try:
        with db.begin_nested():
            message = outbound.send(db, settings, _principal(db, sequence, inbox), inbox,
                                    _request(db, sequence, enrollment, step))
    except GentError as exc:  # a refused recipient, no DKIM key, a cap: the enrollment ends, saying why
        log.warning("sequences: step %s of %s not sent: %s", step, enrollment.id, exc.message)
        _end(db, enrollment, "exited", "error", actor=events.WORKER)
        return
    enrollment.thread_id, enrollment.last_message_id = message.thread_id, message.id
    enrollment.next_step, enrollment.updated_at = step + 1, utcnow()
    events.emit(db, "sequence.step_sent", tenant_id=enrollment.tenant_id, inbox_id=inbox.id,
                resource_id=enrollment.id, actor=events.WORKER,
                payload={"sequence_id": sequence.id, "step": step, "message_id": message.id,
                         "thread_id": message.thread_id})
    due = dt.datetime.fromisoformat(event.payload["due_at"]) if "due_at" in (event.payload or {}) else utcnow()
    _plan_step(db, enrollment, sequence, after=due)


def _request(db: Session, sequence: Sequence, enrollment: SequenceEnrollment, step: int) -> compose.SendRequest:
    item = sequence.emails[step]
    subject, body, html = item.get("subject"), item.get("body"), None
    if item.get("template_id"):
        template = tenancy.find_owned(db, Template, sequence.tenant_id, Template.id == item["template_id"])
        if template is None:
            raise NotFoundError("The step's template was deleted.", field="template_id")
        rendered = templates.render(template, _values(db, enrollment))
        subject, body, html = subject or rendered["subject"] or None, rendered["text_body"] or None, \
            rendered["html_body"] or None
    return compose.SendRequest(to=[compose.Recipient(enrollment.address)], subject=subject or None,
                               text_body=body, html_body=html, reply_to_message_id=enrollment.last_message_id)


def _values(db: Session, enrollment: SequenceEnrollment) -> dict[str, Any]:
    contact = db.get(Contact, enrollment.contact_id)
    name = (contact.full_name or "") if contact else ""
    return {"name": name, "first_name": name.split(" ")[0] if name else "", "email": enrollment.address}


def _principal(db: Session, sequence: Sequence, inbox: Inbox) -> Principal:
    """The sequence acting in its inbox; held for approval when the inbox's agents' sends are."""
    held = any("email:send" in (row or []) for row in db.scalars(
        select(AgentToken.requires_approval).where(AgentToken.inbox_id == inbox.id, AgentToken.status == "active")))
    return Principal.workflow(inbox.tenant_id, sequence.id, inbox.id, ("email:send",),
                              ("email:send",) if held else ())


def _any_exit_on_reply(db: Session) -> bool:
    """Is any enrollment active in a sequence that a reply ends? (Else no received mail ends one.)"""
    return db.scalar(select(SequenceEnrollment.id).join(Sequence, Sequence.id == SequenceEnrollment.sequence_id)
                     .where(SequenceEnrollment.status == "active", Sequence.exit_on_reply.is_(True),
                            SequenceEnrollment.next_step > 0).limit(1)) is not None


def _received(db: Session, event: Event) -> None:
    """Mail from the contact (or in its thread) ends its enrollments with exit_on_reply."""
    message = db.get(Message, event.resource_id or "")
    if message is None or message.direction != "inbound":
        return
    sender = (message.from_email or "").lower()
    rows = list(db.scalars(select(SequenceEnrollment).join(Sequence, Sequence.id == SequenceEnrollment.sequence_id)
                           .where(SequenceEnrollment.inbox_id == message.inbox_id,
                                  SequenceEnrollment.status == "active", Sequence.exit_on_reply.is_(True),
                                  SequenceEnrollment.next_step > 0,
                                  SequenceEnrollment.created_at <= message.created_at,  # not older mail
                                  or_(SequenceEnrollment.thread_id == message.thread_id,
                                      SequenceEnrollment.address == sender))))
    if not rows or _automated(db, message.id):
        return
    for enrollment in rows:
        _end(db, enrollment, "exited", "replied", actor=events.WORKER)


def _automated(db: Session, message_id: str) -> bool:
    """An out-of-office or list mail is no reply (RFC 3834; the same rule as the agenda's)."""
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message_id))
    head = bytes(raw or b"").split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return mime.automated_reason(email.message_from_bytes(head, policy=email.policy.default)) is not None


def _bounced(db: Session, event: Event) -> None:
    """A bounced step ends its enrollment."""
    message = db.get(Message, event.resource_id or "")
    if message is None:
        return
    bounced = {address.lower() for address in (event.payload or {}).get("recipients", [])}
    for enrollment in db.scalars(select(SequenceEnrollment).where(SequenceEnrollment.thread_id == message.thread_id,
                                                                  SequenceEnrollment.status == "active")):
        if enrollment.address.lower() in bounced:
            _end(db, enrollment, "exited", "bounced", actor=events.WORKER)
