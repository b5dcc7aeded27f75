"""Forwarding (issue 20.4, contract section 14): received mail passed on to another address so
that SPF, DKIM and DMARC still hold downstream.

- The original's bytes go out unchanged below our added header fields, so its DKIM signature
  stays valid; an ARC set (RFC 8617: ARC-Authentication-Results, ARC-Message-Signature, ARC-Seal)
  is added on top with the inbox domain's DKIM key (dkimpy's `arc_sign`), sealing what our
  listener saw (its Authentication-Results), so a receiver that trusts us can rely on it.
- The envelope sender is rewritten with SRS (the Sender Rewriting Scheme: `SRS0=hash=tt=domain=
  local@<inbox domain>`, srslib, keyed by a secret derived from settings.secret_key), so SPF is
  checked against our domain. A bounce to an SRS address is accepted by the listener (smtp/
  handler.py) and sent back, with the null sender, to the original sender (`return_bounce`).
- Each inbox may forward all it receives to `default_address` (`enabled`); `keep_copy: false`
  deletes the stored copy once it is forwarded. The worker does this off the inbound path, reading
  `message.received` through the tailer (`tail`), so the 250 never waits for it.
- A message that already carries our `X-Gentbox-Forwarded` mark for the same inbox is not forwarded
  again: two inboxes forwarding to each other stop after one round.

`forward(db, principal, message, to, settings=...)` is the one forwarding function: the default
forwarding and the workflows' `email.forward` action both send through it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import dkim as dkimpy
import srslib
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.dns import Resolver
from appliance.errors import ConflictError, GentError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Domain, Event, Inbox, InboxForwarding, Message, MessageRaw, SystemMail
from appliance.services.automation import events, tailer
from appliance.services.domains import dkim
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.mail import mailauth, messages, outbound
from appliance.services.validation import normalize_email

log = logging.getLogger("gentbox.forwarding")
TAILER = "forwarding"
BATCH = 200
MARK = "X-Gentbox-Forwarded"
FIELDS = ("default_address", "enabled", "keep_copy")


# --- SRS ------------------------------------------------------------------------------------
def _srs(settings: Settings) -> srslib.SRS:
    # A secret of its own, derived: the SRS hash never exposes anything about secret_key itself.
    secret = hmac.new(settings.secret_key.encode(), b"gentbox srs", hashlib.sha256).hexdigest()
    return srslib.SRS(secret)


def srs_address(settings: Settings, sender: str, domain: str) -> str:
    """The SRS envelope sender for mail from `sender` forwarded by `domain` ('' stays the null sender)."""
    if not sender or "@" not in sender:
        return ""
    return _srs(settings).forward(sender, domain)


def is_srs(address: str) -> bool:
    """Does the local part look like an SRS address (SRS0= or SRS1=)?"""
    return address.strip().lower()[:5] in ("srs0=", "srs1=")


def srs_original(settings: Settings, address: str) -> str | None:
    """The original sender an SRS address of ours stands for; None when the hash or time is wrong."""
    try:
        original = _srs(settings).reverse(address.strip())
    except srslib.Error:
        return None
    return original if original and "@" in original else None


# --- ARC ------------------------------------------------------------------------------------
def _has_own_results(raw: bytes, authserv_id: str) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    return f"authentication-results: {authserv_id.lower()}".encode() in head.replace(b"\r\n\t", b" ")


def has_arc_chain(raw: bytes) -> bool:
    """Does raw carry ARC sets already (it was forwarded before reaching us)?"""
    return b"\narc-seal:" in b"\n" + raw.split(b"\r\n\r\n", 1)[0].lower()


def seal(raw: bytes, *, selector: str, domain: str, key_pem: bytes, authserv_id: str,
         chain: str | None = None) -> bytes:
    """raw with an ARC set on top, sealing our Authentication-Results (`none` when we recorded none)
    and, when raw carries a chain already, its validation `chain` (pass/fail), as RFC 8617 asks."""
    if chain is not None:  # dkimpy merges every Authentication-Results of ours into the AAR
        raw = f"Authentication-Results: {authserv_id}; arc={chain}\r\n".encode() + raw
    elif not _has_own_results(raw, authserv_id):
        raw = f"Authentication-Results: {authserv_id}; none\r\n".encode() + raw
    headers = dkimpy.arc_sign(raw, selector.encode(), domain.encode(), key_pem, authserv_id.encode())
    if not headers:
        raise ConflictError("The message could not be ARC-sealed (its ARC chain is broken).")
    return b"".join(headers) + raw


# --- forwarding -----------------------------------------------------------------------------
def forward(db: Session, principal: Principal, message: Message, to: str, *, settings: Settings) -> SystemMail:
    """Queue message to `to`: original bytes and DKIM intact, ARC-sealed, SRS envelope sender."""
    to = normalize_email(to, "to")
    inbox = db.get(Inbox, message.inbox_id)
    if inbox is None or inbox.tenant_id != principal.tenant_id:
        raise NotFoundError("No such message.")
    from appliance.services.mail import sender_rules  # noqa: PLC0415 - the send path's own rule
    sender_rules.check_outbound(db, inbox, [to])
    domain = db.get(Domain, inbox.domain_id)
    key = dkim.signing_key(db, settings, domain.id)
    if key is None:
        raise ConflictError(f"{domain.name} has no active DKIM key to seal forwarded mail with.",
                            fix="Verify the domain (POST /v1/domains/{id}/verify/) to activate its key.")
    raw = bytes(db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message.id)) or b"")
    raw = f"{MARK}: {inbox.address}\r\n".encode() + outbound.wire_bytes(raw)
    chain = mailauth.verify_arc(raw, Resolver(settings)) if has_arc_chain(raw) else None
    sealed = seal(raw, selector=key[0], domain=domain.name, key_pem=key[1], authserv_id=settings.hostname,
                  chain=chain)
    mail_from = srs_address(settings, message.envelope_from or "", domain.name)
    now = utcnow()
    mail = SystemMail(id=new_id("sm"), kind="forward", mail_from=mail_from, rcpt_to=to, raw=sealed,
                      status="queued", created_at=now, meta={"message_id": message.id, "inbox_id": inbox.id})
    db.add(mail)
    db.flush()
    outbound.enqueue(db, settings, mail_from=mail_from, recipients=[to], now=now, system_mail=mail)
    events.emit(db, "message.forwarded", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=message.id,
                actor=principal, payload={"to": to, "thread_id": message.thread_id})
    return mail


def already_forwarded(raw: bytes, inbox_address: str) -> bool:
    """Does raw carry our forwarding mark for this inbox (it went round a forwarding loop)?"""
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    return f"{MARK.lower()}: {inbox_address.lower()}".encode() in head


def return_bounce(db: Session, settings: Settings, raw: bytes, originals: list[str]) -> list[SystemMail]:
    """A bounce (or any mail) sent to our SRS addresses: queued on to each original sender, from <>."""
    now, out = utcnow(), []
    for original in dict.fromkeys(originals):
        mail = SystemMail(id=new_id("sm"), kind="srs_return", mail_from="", rcpt_to=original.lower(),
                          raw=outbound.wire_bytes(raw), status="queued", created_at=now, meta={})
        db.add(mail)
        db.flush()
        outbound.enqueue(db, settings, mail_from="", recipients=[original.lower()], now=now, system_mail=mail)
        out.append(mail)
    return out


# --- the worker's default forwarding ------------------------------------------------------------
def tail(db: Session, settings: Settings, *, batch: int = BATCH) -> int:
    """Forward the received messages of inboxes with forwarding on, after the cursor; returns
    how many events were read (call again while it returns batch)."""
    def handle(event: Event) -> None:
        if event.inbox_id and event.resource_id:
            _forward_received(db, settings, event)
    return tailer.tail(db, TAILER, handle, types=("message.received",), batch=batch)


def _forward_received(db: Session, settings: Settings, event: Event) -> None:
    config = db.get(InboxForwarding, event.inbox_id)
    if config is None or not config.enabled or not config.default_address:
        return
    message, inbox = db.get(Message, event.resource_id), db.get(Inbox, event.inbox_id)
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == event.resource_id))
    if message is None or inbox is None or raw is None or already_forwarded(bytes(raw), inbox.address):
        return
    if message.created_at < config.updated_at:  # mail received before forwarding was set stays here
        return
    try:
        with db.begin_nested():
            forward(db, Principal.system(inbox.tenant_id, "forwarding"), message, config.default_address,
                    settings=settings)
            if not config.keep_copy:
                messages.delete_message(db, inbox, message.id, actor="system:forwarding")
    except GentError as exc:  # e.g. no DKIM key, a recipient the rules refuse: this one stays unforwarded
        log.warning("forwarding: could not forward %s: %s", message.id, exc.message)


# --- use cases ------------------------------------------------------------------------------
def to_dict(inbox: Inbox, row: InboxForwarding | None) -> dict[str, Any]:
    """The API's forwarding object (defaults when none was set)."""
    return {"inbox_id": inbox.id, "default_address": row.default_address if row else None,
            "enabled": bool(row.enabled) if row else False, "keep_copy": bool(row.keep_copy) if row else True,
            "updated_at": row.updated_at.isoformat() if row else None}


def get_forwarding(db: Session, principal: Principal, inbox_id: str | None) -> dict[str, Any]:
    """GET /v1/forwarding/: the inbox's forwarding (off when never set)."""
    inbox = inbox_for(db, principal, inbox_id)
    return to_dict(inbox, db.get(InboxForwarding, inbox.id))


def put_forwarding(db: Session, principal: Principal, inbox_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """PUT /v1/forwarding/: set where the inbox forwards (fields left out keep their value)."""
    inbox = inbox_for(db, principal, inbox_id)
    unknown = set(data) - set(FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"{name}: unknown field; accepted: {', '.join(FIELDS)}", field=name)
    row = db.get(InboxForwarding, inbox.id, with_for_update=True)
    if row is None:
        row = InboxForwarding(inbox_id=inbox.id, tenant_id=inbox.tenant_id, enabled=False, keep_copy=True)
        db.add(row)
    if "default_address" in data:
        value = data["default_address"]
        row.default_address = None if value in (None, "") else normalize_email(value, "default_address")
    for key in ("enabled", "keep_copy"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ValidationError(f"{key}: must be true or false", field=key)
            setattr(row, key, data[key])
    if row.enabled and not row.default_address:
        raise ValidationError("default_address: forwarding needs an address to forward to",
                              field="default_address", fix='Send "default_address": "name@example.com".')
    if row.default_address and row.default_address.lower() == inbox.address.lower():
        raise ValidationError("default_address: an inbox cannot forward to itself", field="default_address")
    row.updated_at = utcnow()
    db.flush()
    events.emit(db, "forwarding.updated", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=inbox.id,
                actor=principal, payload={"enabled": row.enabled, "keep_copy": row.keep_copy})
    return to_dict(inbox, row)
