"""Compliance requests (issue 23, contract section 18): erasure with a grace period, and the
worker's pass that carries out what is due (exports, erasures, retention).

An erasure request (`POST /v1/compliance/deletion/`) is scheduled 7 days ahead through the
schedule (appliance/services/automation/schedule.py, key `deletion:<id>`); the subject's address
waits sealed under a key derived from the appliance secret, with a keyed digest beside it. A
`DELETE` within the grace period cancels it and forgets the address. When the schedule fires
`compliance.deletion_due`, the worker (`run_due`, reading the event table through the tailer)
carries it out with erasure.py, clears the sealed address and writes a final audit entry that
names the scope and the rows removed per area, never the address.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Event, User
from appliance.models.compliance import ComplianceDeletion
from appliance.security import seal, unseal
from appliance.services import tenancy
from appliance.services.automation import events, schedule, tailer
from appliance.services.governance import audit, erasure

log = logging.getLogger("gentbox.compliance")
GRACE = dt.timedelta(days=7)
CURSOR = "compliance"
BATCH = 200
_PURPOSE = "compliance-subject"
WORKER_ACTOR = audit.Actor("system", "system:worker", "worker")


# --- requests ---------------------------------------------------------------------------------
def subject_digest(secret_key: str, address: str) -> str:
    """A keyed digest of an erased subject: lets a restored backup be checked, names nobody."""
    key = hashlib.sha256(f"gentbox-erasure:{secret_key}".encode()).digest()
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def request_deletion(db: Session, settings: Settings, principal: Any, scope: str,
                     address: str | None = None) -> ComplianceDeletion:
    """POST /v1/compliance/deletion/: schedule an erasure 7 days ahead (cancellable until then)."""
    user_id, subject = _subject_of(db, principal, scope, address)
    now = utcnow()
    row = ComplianceDeletion(id=new_id("del"), tenant_id=principal.tenant_id, requested_by=principal.id, scope=scope,
                             user_id=user_id, status="scheduled", effective_at=now + GRACE, created_at=now,
                             subject_digest=subject_digest(settings.secret_key, subject), counts={})
    row.subject_sealed = seal(settings.secret_key, _PURPOSE, subject.encode(), row.id)
    db.add(row)
    db.flush()
    schedule.plan(db, tenant_id=row.tenant_id, inbox_id=None, key=f"deletion:{row.id}", source="compliance",
                  event_type="compliance.deletion_due", due_at=row.effective_at, resource_id=row.id)
    events.emit(db, "compliance.deletion_scheduled", tenant_id=row.tenant_id, resource_id=row.id, actor=principal,
                payload={"scope": scope, "effective_at": row.effective_at.isoformat()})
    audit.refine(resource_type="compliance_deletions", resource_id=row.id, changes={"scope": scope})
    return row


def _subject_of(db: Session, principal: Any, scope: str, address: str | None) -> tuple[str | None, str]:
    """(user id, the subject's address) for a request; who may ask for what."""
    if principal.kind != "user":
        raise ForbiddenError("Erasure is requested by a person signed in.", code="session_required")
    if scope == "user":
        if address and address.strip().lower() != principal.user.email.lower():
            raise ValidationError("A user erases their own account; name no other address.", field="address")
        if principal.user.role == "owner":
            raise ConflictError("An owner erases the whole tenant (scope tenant), not their account alone.",
                                field="scope", fix="Send scope \"tenant\", or hand the ownership on first.")
        return principal.user.id, principal.user.email.lower()
    if scope == "tenant":
        if principal.user.role != "owner":
            raise ForbiddenError("Only the tenant's owner may erase the tenant.", code="forbidden")
        return None, principal.tenant_id
    if not principal.is_manager:
        raise ForbiddenError("A correspondent's erasure is requested by an owner or admin.", code="manager_required",
                             fix="Sign in as an owner or admin of the tenant.")
    from appliance.services.validation import normalize_email

    return None, normalize_email(address or "", field="address")


def cancel_deletion(db: Session, principal: Any, deletion_id: str) -> ComplianceDeletion:
    """DELETE /v1/compliance/deletion/{id}/: cancel within the grace period; the address is forgotten."""
    row = tenancy.get_owned(db, ComplianceDeletion, deletion_id, principal.tenant_id, message="No such deletion.")
    if row.requested_by != principal.id and not principal.is_manager:
        raise NotFoundError("No such deletion.")
    if row.status != "scheduled" or utcnow() >= row.effective_at:
        raise ConflictError(f"The deletion is {row.status}; only a scheduled one can be cancelled in its grace period.")
    row.status, row.cancelled_at, row.subject_sealed = "cancelled", utcnow(), None
    schedule.cancel(db, f"deletion:{row.id}")
    events.emit(db, "compliance.deletion_cancelled", tenant_id=row.tenant_id, resource_id=row.id, actor=principal,
                payload={"scope": row.scope})
    return row


def list_deletions(db: Session, principal: Any) -> list[ComplianceDeletion]:
    """The tenant's erasure requests (a member sees their own), newest first."""
    query = tenancy.owned(select(ComplianceDeletion), ComplianceDeletion, principal.tenant_id)
    if not principal.is_manager:
        query = query.where(ComplianceDeletion.requested_by == principal.id)
    return list(db.scalars(query.order_by(ComplianceDeletion.id.desc()).limit(200)))


def present_deletion(row: ComplianceDeletion) -> dict:
    return {"deletion_id": row.id, "scope": row.scope, "status": row.status,
            "effective_at": row.effective_at.isoformat(), "created_at": row.created_at.isoformat(),
            "cancelled_at": row.cancelled_at and row.cancelled_at.isoformat(),
            "completed_at": row.completed_at and row.completed_at.isoformat(), "counts": row.counts or {}}


# --- carrying out ------------------------------------------------------------------------------
def run_due(store_session: Any, settings: Settings) -> int:
    """The worker's pass: read the due-events (the tailer), then carry out each due erasure in its
    own transaction; returns how many requests it handled."""
    from appliance.services.governance import retention

    handled = 0
    while True:
        with store_session() as db:
            due: list[Event] = []
            read = tailer.tail(db, CURSOR, due.append, batch=BATCH,
                               types=("compliance.deletion_due", "compliance.retention_due"))
            for event in due:
                if event.type == "compliance.deletion_due":
                    _mark_due(db, event.resource_id)
                else:
                    retention.mark_due(db, event.tenant_id)
        if read < BATCH:
            break
    for deletion_id in _due_ids(store_session):
        with store_session() as db:
            handled += execute_deletion(db, settings, deletion_id)
    return handled + retention.run_due(store_session, settings)


def _mark_due(db: Session, deletion_id: str | None) -> None:
    row = db.get(ComplianceDeletion, deletion_id) if deletion_id else None
    if row is not None and row.status == "scheduled":
        row.status = "due"


def _due_ids(store_session: Any) -> list[str]:
    with store_session() as db:
        return list(db.scalars(select(ComplianceDeletion.id).where(ComplianceDeletion.status == "due")
                               .order_by(ComplianceDeletion.effective_at)))


def execute_deletion(db: Session, settings: Settings, deletion_id: str) -> int:
    """Carry out one due erasure in the caller's transaction: every area, then the final audit entry."""
    claimed = db.execute(update(ComplianceDeletion).where(ComplianceDeletion.id == deletion_id,
                                                          ComplianceDeletion.status == "due")
                         .values(status="running")).rowcount  # two workers never carry one out twice
    row = db.get(ComplianceDeletion, deletion_id)
    if not claimed or row is None or row.subject_sealed is None:
        return 0
    address = unseal(settings.secret_key, _PURPOSE, row.subject_sealed, row.id).decode()
    subject = erasure.Subject(scope=row.scope, tenant_id=row.tenant_id,
                              address=None if row.scope == "tenant" else address, user_id=row.user_id)
    with events.acting_as(events.WORKER):
        counts = erasure.erase(db, subject)
        row.status, row.completed_at, row.subject_sealed, row.counts = "completed", utcnow(), None, counts
        events.emit(db, "compliance.deletion_completed", tenant_id=row.tenant_id, resource_id=row.id,
                    actor=events.WORKER, payload={"scope": row.scope})
    audit.record(db, settings.secret_key, action="compliance.erasure_completed", actor=WORKER_ACTOR,
                 tenant_id=row.tenant_id, edge="worker", resource_type="compliance_deletions", resource_id=row.id,
                 changes={"scope": row.scope, "rows": counts})
    log.info("erasure %s (%s) carried out: %s", row.id, row.scope, counts)
    return 1


def erasures_since(db: Session, since: dt.datetime | None) -> list[dict]:
    """Erasures carried out after `since` (every one for None): what a backup records."""
    query = select(ComplianceDeletion).where(ComplianceDeletion.status == "completed")
    if since is not None:
        query = query.where(ComplianceDeletion.completed_at > since)
    return [{"deletion_id": r.id, "tenant_id": r.tenant_id, "scope": r.scope, "subject_digest": r.subject_digest,
             "completed_at": r.completed_at.isoformat()} for r in db.scalars(query.order_by(ComplianceDeletion.id))]


def users_of(db: Session, tenant_id: str) -> list[User]:
    return list(db.scalars(select(User).where(User.tenant_id == tenant_id).order_by(User.created_at)))
