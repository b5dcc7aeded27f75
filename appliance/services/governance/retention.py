"""Retention (issue 23 point 6): how long a tenant keeps messages, events and audit entries.

`PUT /v1/compliance/retention/` stores the policy and plans the daily run through the schedule
(key `retention:<tenant>`, re-armed a day later each time it fires); the worker reads the fired
`compliance.retention_due` event (compliance.run_due) and applies the policy in one transaction.

Audit pruning is the one deletion the append-only triggers allow (migration 0035). In one
transaction it appends an `audit.pruned` entry holding an Ed25519 signature (the checkpoint key)
over the last removed entry's seq and hash, writes the chain's mark in `audit_prunes`, deletes
the entries at or below that seq (the triggers let exactly those go) and removes the mark again.
On PostgreSQL the last three steps are `audit_prune()` (migration 0040), a function of the audit
owner role, because a hardened application role may not write the mark itself (audit_owner.py).
`audit.verify` then starts the walk at the signed anchor: what is left still verifies, and any
other deletion (below the anchor's successor, or a gap after it) is still named.
"""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ValidationError
from appliance.models import AuditEntry, AuditHead, Event, Message
from appliance.models.compliance import AuditPrune, RetentionPolicy
from appliance.services.automation import events, schedule
from appliance.services.governance import audit

DAY = dt.timedelta(days=1)
FIELDS = ("messages_days", "events_days", "audit_days")
MAX_DAYS = 36500
MIN_AUDIT_DAYS = 30  # an auditor's window is at least a month; shorter would erase the evidence too soon
PRUNED = "audit.pruned"


def _next_day(db: Session, row: Any) -> dt.datetime:
    """A day after this firing, skipping days a stopped worker missed (one run catches up)."""
    due, now = row.due_at + DAY, utcnow()
    if due <= now:
        due += DAY * ((now - due) // DAY + 1)
    return due


def register_schedule() -> None:
    """The daily run re-arms itself a day later each time it fires."""
    schedule.register_next("compliance.retention", _next_day)


def get_policy(db: Session, tenant_id: str) -> dict:
    """GET /v1/compliance/retention/: the tenant's policy (None: kept for ever)."""
    row = db.get(RetentionPolicy, tenant_id)
    out = {name: getattr(row, name) if row else None for name in FIELDS}
    out.update(applied_at=row.applied_at.isoformat() if row and row.applied_at else None,
               last_result=(row.last_result if row else {}) or {})
    return out


def set_policy(db: Session, principal: Any, values: dict[str, int | None]) -> dict:
    """PUT /v1/compliance/retention/: store the policy and plan its daily run (owners and admins)."""
    from appliance.services.identity.auth import require_manager

    require_manager(principal)
    for name in FIELDS:
        days = values.get(name)
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise ValidationError(f"{name} must be between 1 and {MAX_DAYS} days, or null.", field=name)
    if values.get("audit_days") is not None and values["audit_days"] < MIN_AUDIT_DAYS:
        raise ValidationError(f"audit_days must be at least {MIN_AUDIT_DAYS}.", field="audit_days")
    row = db.get(RetentionPolicy, principal.tenant_id)
    if row is None:
        row = RetentionPolicy(tenant_id=principal.tenant_id, last_result={})
        db.add(row)
    for name in FIELDS:
        setattr(row, name, values.get(name))
    row.updated_at = utcnow()
    db.flush()
    schedule.plan(db, tenant_id=principal.tenant_id, inbox_id=None, key=f"retention:{principal.tenant_id}",
                  source="compliance.retention", event_type="compliance.retention_due", due_at=utcnow() + DAY)
    return get_policy(db, principal.tenant_id)


def mark_due(db: Session, tenant_id: str | None) -> None:
    """The schedule fired: the tenant's policy runs in the worker's next step."""
    row = db.get(RetentionPolicy, tenant_id) if tenant_id else None
    if row is not None:
        row.last_result = {**(row.last_result or {}), "due": True}


def run_due(store_session: Any, settings: Settings) -> int:
    """Apply every policy marked due, one transaction per tenant; returns how many ran."""
    with store_session() as db:
        tenants = [r.tenant_id for r in db.scalars(select(RetentionPolicy)) if (r.last_result or {}).get("due")]
    ran = 0
    for tenant_id in tenants:
        with store_session() as db:
            query = select(RetentionPolicy).where(RetentionPolicy.tenant_id == tenant_id)
            if db.get_bind().dialect.name == "postgresql":
                query = query.with_for_update()  # another worker waits, then sees it done
            row = db.scalar(query.execution_options(populate_existing=True))
            if row is not None and (row.last_result or {}).get("due"):
                apply_policy(db, settings, tenant_id)
                ran += 1
    return ran


def apply_policy(db: Session, settings: Settings, tenant_id: str, now: dt.datetime | None = None) -> dict:
    """Remove what the tenant's policy no longer keeps; the counts are emitted and stored."""
    from appliance.services.governance import erasure

    now = now or utcnow()
    row = db.get(RetentionPolicy, tenant_id)
    result = {"messages": 0, "events": 0, "audit_entries": 0}
    if row.messages_days:
        result["messages"] = erasure.remove_messages(db, tenant_id, Message.created_at < now - dt.timedelta(
            days=row.messages_days))
    if row.events_days:
        result["events"] = db.execute(delete(Event).where(Event.tenant_id == tenant_id, Event.occurred_at < now - dt.timedelta(
            days=row.events_days))).rowcount
    if row.audit_days:
        result["audit_entries"] = prune_audit(db, settings.secret_key, tenant_id, now - dt.timedelta(days=row.audit_days))
    row.applied_at, row.last_result = now, result
    events.emit(db, "compliance.retention_applied", tenant_id=tenant_id, actor=events.WORKER, payload=result)
    return result


# --- audit pruning ---------------------------------------------------------------------------
def _prune_message(chain: str, seq: int, head_hash: str) -> bytes:
    return f"gentbox-audit-prune:{chain}:{seq}:{head_hash}".encode()


def prune_audit(db: Session, secret_key: str, chain: str, before: dt.datetime) -> int:
    """Delete the chain's entries older than `before`, leaving a signed anchor; returns how many."""
    audit._lock_head(db, chain)  # one pruner or writer at a time
    through = db.scalar(select(func.max(AuditEntry.seq)).where(AuditEntry.chain == chain, AuditEntry.at < before))
    head = db.get(AuditHead, chain)
    if through is None or head is None or through >= head.seq:
        return 0  # nothing old, or it would leave nothing to anchor to
    last = db.scalar(select(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.seq == through))
    signature = base64.b64encode(audit.signing_key(secret_key).sign(_prune_message(chain, through, last.hash))).decode()
    audit.record(db, secret_key, action=PRUNED, actor=audit.Actor("system", "system:worker", "worker"),
                 tenant_id=None if chain == audit.BOX_CHAIN else chain, edge="worker", resource_type="audit_chain",
                 resource_id=f"{chain}:{through}",
                 changes={"through_seq": through, "through_hash": last.hash, "signature": signature,
                          "public_key": audit.public_key_b64(secret_key)})
    if db.get_bind().dialect.name == "postgresql":  # the audit owner's function: see audit_owner.py
        return int(db.scalar(text("SELECT audit_prune(:chain, :through)"), {"chain": chain, "through": through}))
    db.add(AuditPrune(chain=chain, through_seq=through, at=utcnow()))
    db.flush()
    removed = db.execute(delete(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.seq <= through)
                         .execution_options(synchronize_session=False)).rowcount
    db.execute(delete(AuditPrune).where(AuditPrune.chain == chain))
    return removed


def check_prune(entry: AuditEntry, secret_key: str) -> str | None:
    """The problem with a prune entry's signature, or None (audit.verify calls it)."""
    detail = (entry.pii or {}).get("changes") or {}
    if detail.get("public_key") != audit.public_key_b64(secret_key):
        return "the prune entry is not signed with this appliance's key"
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        Ed25519PublicKey.from_public_bytes(base64.b64decode(detail["public_key"])).verify(
            base64.b64decode(detail["signature"]),
            _prune_message(entry.chain, detail["through_seq"], detail["through_hash"]))
    except Exception:  # noqa: BLE001 - any failure to verify is a broken anchor
        return "the prune entry's signature does not verify"
    return None


def anchor(db: Session, secret_key: str, chain: str) -> tuple[int, str] | None:
    """(seq, hash) of the last entry retention removed, from the newest signed prune entry."""
    entry = db.scalar(select(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.action == PRUNED,
                                               AuditEntry.pii.isnot(None)).order_by(AuditEntry.seq.desc()).limit(1))
    if entry is None or check_prune(entry, secret_key):
        return None
    detail = entry.pii["changes"]
    return int(detail["through_seq"]), str(detail["through_hash"])
