"""The out-of-office reply (issue 27), run by the worker off the inbound path.

A tailer reads `message.received` events after its cursor (an `alert_cursors` row named
`out_of_office`, moved with a conditional UPDATE like the alerts tailer's, so two workers never
both handle an event) and answers each message whose inbox has `auto_reply.enabled`, received
before `auto_reply.until`, when the RFC 3834 rules of autoreply.py allow it and the sender was not
answered in the last 7 days. The reply goes through the one send path (outbound.send) as the
appliance acting for the inbox: DKIM, the Sent copy and caps apply, and when the inbox's sends
are held for approval (an active token of the inbox holds email:send) the reply is held too.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import GentError
from appliance.models import AgentToken, Event, Inbox, Message, MessageRaw, Tenant
from appliance.services.automation import tailer
from appliance.services.identity.auth import Principal
from appliance.services.identity.settings import inbox_settings
from appliance.services.mail import autoreply, compose, outbound

log = logging.getLogger("gentbox.outofoffice")
TAILER = "out_of_office"
PURPOSE = "out_of_office"
BATCH = 200


def tail(db: Session, settings: Settings, *, batch: int = BATCH) -> int:
    """Answer the next received messages after the cursor and move it, in the caller's
    transaction; returns how many events were read (call again while it returns batch)."""
    def answer(event: Event) -> None:
        if event.inbox_id and event.resource_id:
            _answer(db, settings, event)
    return tailer.tail(db, TAILER, answer, types=("message.received",), batch=batch)


def _answer(db: Session, settings: Settings, event: Event) -> None:
    """One received message: answered, or skipped with the reason logged (never an error)."""
    inbox = db.get(Inbox, event.inbox_id)
    if inbox is None or inbox.status != "active":
        return
    reply = inbox_settings(inbox, db.get(Tenant, inbox.tenant_id))["auto_reply"]
    if not reply.get("enabled") or not _before_until(reply.get("until"), event.occurred_at):
        return
    message = db.get(Message, event.resource_id)
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == event.resource_id))
    if message is None or raw is None:
        return
    reason = autoreply.why_not(db, autoreply.headers_of(bytes(raw)), message.envelope_from,
                               hostname=settings.hostname)
    if reason is not None:
        log.info("out-of-office: not answering %s (%s)", message.id, reason)
        return
    try:
        with db.begin_nested():
            sender = autoreply.sender_of(message.envelope_from)
            if autoreply.claim_window(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, sender=sender,
                                      purpose=PURPOSE, now=utcnow()):
                outbound.send(db, settings, _principal(db, inbox), inbox, _request(reply, message, sender))
    except GentError as exc:  # e.g. no DKIM key yet: this message goes unanswered, the rest go on
        log.warning("out-of-office: could not answer %s: %s", message.id, exc.message)
    except Exception:  # noqa: BLE001 - one bad message must not stop the cursor for every inbox
        log.exception("out-of-office: answering %s failed", message.id)


def _before_until(until: str | None, received_at: dt.datetime) -> bool:
    return until is None or received_at < dt.datetime.fromisoformat(until)


def _request(reply: dict, message: Message, sender: str) -> compose.SendRequest:
    subject = reply.get("subject") or f"Auto: {message.subject or ''}".strip()
    body = reply.get("text_body") or "I am away and will read your message when I am back."
    return compose.SendRequest(to=[compose.Recipient(sender)], subject=subject, text_body=body,
                               reply_to_message_id=message.id,
                               headers={"Auto-Submitted": autoreply.AUTO_SUBMITTED,
                                        "X-Auto-Response-Suppress": "All"})


def _principal(db: Session, inbox: Inbox) -> Principal:
    """The appliance acting for the inbox; held like the inbox's agents when they are held."""
    return Principal(kind="system", tenant_id=inbox.tenant_id, label="out-of-office",
                     held=("email:send",) if _holds_sends(db, inbox) else ())


def _holds_sends(db: Session, inbox: Inbox) -> bool:
    tokens = db.scalars(select(AgentToken.requires_approval).where(AgentToken.inbox_id == inbox.id,
                                                                   AgentToken.status == "active"))
    return any("email:send" in (held or []) for held in tokens)
