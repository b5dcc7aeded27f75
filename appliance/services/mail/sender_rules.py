"""Sender rules (issue 20.3, contract section 14): who may write to an inbox, and whom it may
write to.

Each inbox has an inbound and an outbound list with a mode: `open` (no rule: the default),
`allowlist` (only matching addresses) or `blocklist` (every address but the matching ones). A
pattern is `@example.com` (that domain exactly), `*.example.com` (its subdomains, not the domain
itself: add `@example.com` for both) or an address. Domains are compared in punycode, lower case.

Inbound rules are enforced in the SMTP listener (smtp/handler.py): the envelope sender at RCPT and
the header From at DATA, both `550 5.7.1`; the null sender `<>` (bounces) passes the envelope
check and meets the From check. Outbound rules are enforced in the one send path
(outbound.send), so the API, workflows, sequences, the out-of-office reply and SMTP submission
all obey: `403 recipient_not_allowed` naming the address.
"""
from __future__ import annotations

from typing import Any

import idna
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ForbiddenError, ValidationError
from appliance.models import Inbox, SenderRules
from appliance.models.senders import SENDER_MODES
from appliance.services.automation import events
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.validation import normalize_email

MAX_PATTERNS = 1000
FIELDS = ("inbound_mode", "outbound_mode", "inbound_patterns", "outbound_patterns")


# --- matching (pure) ------------------------------------------------------------------------
def _domain(name: str) -> str:
    try:
        return idna.encode(name.strip().lower(), uts46=True).decode("ascii")
    except idna.IDNAError:
        return name.strip().lower()


def matches(address: str, patterns: list[str]) -> bool:
    """Does address match any pattern (`@domain`, `*.domain`, an address)?"""
    local, _, domain = (address or "").strip().lower().rpartition("@")
    if not local or not domain:
        return False
    domain = _domain(domain)
    full = f"{local}@{domain}"
    for pattern in patterns:
        if pattern.startswith("@"):
            if domain == pattern[1:]:
                return True
        elif pattern.startswith("*."):
            if domain.endswith(pattern[1:]):
                return True
        elif full == pattern:
            return True
    return False


def allows(mode: str, patterns: list[str], address: str) -> bool:
    """May address pass a list in this mode?"""
    if mode == "allowlist":
        return matches(address, patterns)
    if mode == "blocklist":
        return not matches(address, patterns)
    return True


def check_pattern(value: Any, field: str) -> str:
    """One pattern, normalised (lower case, punycode); 400 naming field when it is none of the three forms."""
    if not isinstance(value, str) or not value.strip() or len(value) > 320:
        raise ValidationError(f"{field}: must be @domain, *.domain or an address", field=field)
    value = value.strip().lower()
    if value.startswith("@") or value.startswith("*."):
        head, name = value[:1] if value[0] == "@" else value[:2], value[1:] if value[0] == "@" else value[2:]
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise ValidationError(f"{field}: '{value}' is not a domain", field=field,
                                  fix="Use @example.com, *.example.com or name@example.com") from None
        if "." not in name and name != "localhost":
            raise ValidationError(f"{field}: '{value}' is not a domain", field=field,
                                  fix="Use @example.com, *.example.com or name@example.com")
        return f"{head}{name}"
    return normalize_email(value, field)


# --- the listener's and the send path's checks ------------------------------------------------
def rules_of(db: Session | Connection, inbox_id: str) -> tuple[str, list, str, list] | None:
    """(inbound_mode, inbound_patterns, outbound_mode, outbound_patterns) of the inbox, or None (open).
    Core statement only: the listener asks on a plain connection."""
    row = db.execute(_RULES, {"inbox_id": inbox_id}).first()
    return tuple(row) if row is not None else None


_RULES = select(SenderRules.inbound_mode, SenderRules.inbound_patterns, SenderRules.outbound_mode,
                SenderRules.outbound_patterns).where(SenderRules.inbox_id == bindparam("inbox_id"))  # built once


def inbound_allowed(db: Session | Connection, inbox_id: str, sender: str) -> bool:
    """May sender (an envelope or a From address) write to the inbox? The null sender passes."""
    if not sender:
        return True
    rules = rules_of(db, inbox_id)
    return rules is None or allows(rules[0], rules[1] or [], sender)


def check_outbound(db: Session, inbox: Inbox, recipients: list[str]) -> None:
    """403 recipient_not_allowed naming the first recipient the inbox's outbound rules refuse."""
    rules = rules_of(db, inbox.id)
    if rules is None:
        return
    for address in recipients:
        if not allows(rules[2], rules[3] or [], address):
            raise ForbiddenError(f"{address} is not allowed by {inbox.address}'s outbound sender rules.",
                                 code="recipient_not_allowed", field="to",
                                 fix="Remove the address, or change the inbox's outbound rules "
                                     "(PUT /v1/sender-rules/).")


# --- use cases ------------------------------------------------------------------------------
def to_dict(inbox: Inbox, row: SenderRules | None) -> dict[str, Any]:
    """The API's rules object (defaults when the inbox has none)."""
    return {"inbox_id": inbox.id,
            "inbound_mode": row.inbound_mode if row else "open", "outbound_mode": row.outbound_mode if row else "open",
            "inbound_patterns": list(row.inbound_patterns or []) if row else [],
            "outbound_patterns": list(row.outbound_patterns or []) if row else [],
            "updated_at": row.updated_at.isoformat() if row else None}


def get_rules(db: Session, principal: Principal, inbox_id: str | None) -> dict[str, Any]:
    """GET /v1/sender-rules/: the inbox's rules (open both ways when none were set)."""
    inbox = inbox_for(db, principal, inbox_id)
    return to_dict(inbox, db.get(SenderRules, inbox.id))


def _validated(data: dict[str, Any], row: SenderRules | None) -> dict[str, Any]:
    unknown = set(data) - set(FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"{name}: unknown field; accepted: {', '.join(FIELDS)}", field=name)
    out: dict[str, Any] = {}
    for side in ("inbound", "outbound"):
        mode = data.get(f"{side}_mode", getattr(row, f"{side}_mode", "open") if row else "open")
        if mode not in SENDER_MODES:
            raise ValidationError(f"{side}_mode: one of {', '.join(SENDER_MODES)}", field=f"{side}_mode")
        patterns = data.get(f"{side}_patterns")
        if patterns is None:
            patterns = list(getattr(row, f"{side}_patterns", None) or []) if row else []
        if not isinstance(patterns, list) or len(patterns) > MAX_PATTERNS:
            raise ValidationError(f"{side}_patterns: a list of at most {MAX_PATTERNS} patterns",
                                  field=f"{side}_patterns")
        checked = [check_pattern(p, f"{side}_patterns[{i}]") for i, p in enumerate(patterns)]
        out[f"{side}_mode"], out[f"{side}_patterns"] = mode, list(dict.fromkeys(checked))
    return out


def put_rules(db: Session, principal: Principal, inbox_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """PUT /v1/sender-rules/: set the inbox's rules (fields left out keep their value)."""
    inbox = inbox_for(db, principal, inbox_id)
    row = db.get(SenderRules, inbox.id, with_for_update=True)
    values = _validated(data, row)
    if row is None:
        row = SenderRules(inbox_id=inbox.id, tenant_id=inbox.tenant_id)
        db.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    db.flush()
    events.emit(db, "sender_rules.updated", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=inbox.id,
                actor=principal, payload={"inbound_mode": row.inbound_mode, "outbound_mode": row.outbound_mode,
                                          "inbound_patterns": len(row.inbound_patterns),
                                          "outbound_patterns": len(row.outbound_patterns)})
    return to_dict(inbox, row)
