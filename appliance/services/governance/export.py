"""Data export (issue 23 point 4, contract section 18): a person's or a tenant's data as one zip.

`POST /v1/compliance/export/` queues a job; the worker (`run_pending`, every pass and
`gentbox worker --once`) claims it with a conditional UPDATE (queued -> running, so two workers
never build one twice), builds the zip with progress, and stores it sealed (AES-GCM under a key
derived from the appliance secret, bound to the export's id) until its download link expires 24
hours later; then the bytes are dropped (`purge_expired`). The link is signed (HMAC under a key
derived from the appliance secret over the id and the expiry), so it works without a session,
for 24 hours, and for nothing else.

The zip: `account.json`, `inboxes/<address>/<msg_id>.eml` (the stored raw bytes exactly),
`contacts.vcf` (vCard 3.0, the contacts area's writer), `calendar.ics` (the calendar area's
VEVENTs), `tasks.json`, `audit.json` (the user's entries, or the tenant's chain),
`files/<address>/<file_id>/<version>/<name>` (every version's bytes, from the blob store) with
`files.json` describing them (issue 19), and
`manifest.json` with the SHA-256 of every other file. A scope `user` export covers the user's
account, the inboxes they are a member of, and the audit entries they made; scope `tenant`
(owners) every inbox and user of the tenant.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import zipfile
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ForbiddenError, NotFoundError
from appliance.ids import new_id
from appliance.models import (AuditEntry, CalendarEvent, Contact, Inbox, InboxMember, Message, MessageRaw, Task,
                              Tenant, User)
from appliance.models.compliance import ComplianceExport
from appliance.security import seal, unseal
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import audit

log = logging.getLogger("gentbox.compliance")
VALID_FOR = dt.timedelta(hours=24)
_PURPOSE = "compliance-export"


# --- requests ---------------------------------------------------------------------------------
def request_export(db: Session, principal: Any, scope: str) -> ComplianceExport:
    """POST /v1/compliance/export/: queue the caller's export (scope tenant: the owner's whole tenant)."""
    if principal.kind != "user":
        raise ForbiddenError("An export is requested by a person signed in.", code="session_required")
    if scope == "tenant" and principal.user.role != "owner":
        raise ForbiddenError("Only the tenant's owner may export the whole tenant.")
    row = ComplianceExport(id=new_id("exp"), tenant_id=principal.tenant_id, user_id=principal.user.id, scope=scope,
                           status="queued", progress=0, size=0, created_at=utcnow())
    db.add(row)
    db.flush()
    events.emit(db, "compliance.export_requested", tenant_id=row.tenant_id, resource_id=row.id, actor=principal,
                payload={"scope": scope})
    audit.refine(resource_type="compliance_exports", resource_id=row.id)
    return row


def list_exports(db: Session, settings: Settings, principal: Any) -> list[dict]:
    """GET /v1/compliance/export/: the caller's exports (owners and admins: the tenant's), newest first."""
    query = tenancy.owned(select(ComplianceExport), ComplianceExport, principal.tenant_id)
    if not principal.is_manager:
        query = query.where(ComplianceExport.user_id == principal.id)
    rows = db.scalars(query.order_by(ComplianceExport.id.desc()).limit(100))
    return [present(settings, row) for row in rows]


def present(settings: Settings, row: ComplianceExport) -> dict:
    ready = row.status == "ready" and row.expires_at is not None and row.expires_at > utcnow()
    return {"export_id": row.id, "scope": row.scope, "status": row.status if ready or row.status != "ready" else "expired",
            "progress": row.progress, "size": row.size, "sha256": row.sha256, "error": row.error,
            "created_at": row.created_at.isoformat(), "ready_at": row.ready_at and row.ready_at.isoformat(),
            "expires_at": row.expires_at and row.expires_at.isoformat(),
            "download_url": download_url(settings, row) if ready else None}


# --- the signed link ---------------------------------------------------------------------------
def _signature(secret_key: str, export_id: str, expires: int) -> str:
    key = hashlib.sha256(f"gentbox-export-url:{secret_key}".encode()).digest()
    return hmac.new(key, f"{export_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def download_url(settings: Settings, row: ComplianceExport) -> str:
    expires = int(row.expires_at.timestamp())
    query = urlencode({"expires": expires, "signature": _signature(settings.secret_key, row.id, expires)})
    return f"{settings.base_url}/v1/compliance/export/{row.id}/download/?{query}"


def download(db: Session, settings: Settings, export_id: str, expires: int, signature: str) -> tuple[str, bytes]:
    """The zip behind a signed link: (file name, bytes); 404 for a wrong, expired or dropped one."""
    good = _signature(settings.secret_key, export_id, expires)
    row = db.get(ComplianceExport, export_id)
    if (not hmac.compare_digest(good, signature or "") or row is None or row.sealed is None
            or expires < utcnow().timestamp() or row.expires_at is None or int(row.expires_at.timestamp()) != expires):
        raise NotFoundError("No such export, or its link has expired.", fix="Request a new export.")
    return f"gentbox-export-{row.id}.zip", unseal(settings.secret_key, _PURPOSE, row.sealed, row.id)


# --- the worker ---------------------------------------------------------------------------------
def run_pending(store_session: Any, settings: Settings) -> int:
    """Build every queued export (claimed one at a time) and drop the expired; returns how many built."""
    built = 0
    while True:
        with store_session() as db:
            export_id = db.scalar(select(ComplianceExport.id).where(ComplianceExport.status == "queued")
                                  .order_by(ComplianceExport.id).limit(1))
            if export_id is None:
                break
            claimed = db.execute(update(ComplianceExport).where(ComplianceExport.id == export_id,
                                                                ComplianceExport.status == "queued")
                                 .values(status="running", started_at=utcnow())).rowcount
        if claimed:
            built += _build_one(store_session, settings, export_id)
    with store_session() as db:
        purge_expired(db)
    return built


def _build_one(store_session: Any, settings: Settings, export_id: str) -> int:
    try:
        data = build_zip(store_session, export_id)
    except Exception as exc:  # noqa: BLE001 - a failed export is reported on the row, never retried in a loop
        log.exception("export %s failed", export_id)
        with store_session() as db:
            row = db.get(ComplianceExport, export_id)
            row.status, row.error = "failed", type(exc).__name__
            events.emit(db, "compliance.export_failed", tenant_id=row.tenant_id, resource_id=row.id,
                        actor=events.WORKER, payload={"scope": row.scope})
        return 0
    with store_session() as db:
        row = db.get(ComplianceExport, export_id)
        now = utcnow()
        row.sealed = seal(settings.secret_key, _PURPOSE, data, row.id)
        row.size, row.sha256, row.status, row.progress = len(data), hashlib.sha256(data).hexdigest(), "ready", 100
        row.ready_at, row.expires_at = now, now + VALID_FOR
        events.emit(db, "compliance.export_ready", tenant_id=row.tenant_id, resource_id=row.id, actor=events.WORKER,
                    payload={"scope": row.scope, "size": row.size, "expires_at": row.expires_at.isoformat()})
    return 1


def purge_expired(db: Session, now: dt.datetime | None = None) -> int:
    """Drop the bytes of exports whose link expired; the row stays, as `expired`."""
    return db.execute(update(ComplianceExport).where(ComplianceExport.status == "ready",
                                                     ComplianceExport.expires_at <= (now or utcnow()))
                      .values(status="expired", sealed=None)).rowcount


def _progress(store_session: Any, export_id: str, percent: int) -> None:
    with store_session() as db:
        db.execute(update(ComplianceExport).where(ComplianceExport.id == export_id).values(progress=percent))


# --- the zip ------------------------------------------------------------------------------------
def build_zip(store_session: Any, export_id: str) -> bytes:
    """The export's zip, every file listed with its SHA-256 in manifest.json."""
    with store_session() as db:
        row = db.get(ComplianceExport, export_id)
        tenant, scope, user_id = db.get(Tenant, row.tenant_id), row.scope, row.user_id
        inboxes = _inboxes(db, tenant.id, scope, user_id)
        files: dict[str, bytes] = {"account.json": _json(_account(db, tenant, scope, user_id, inboxes))}
    for done, inbox in enumerate(inboxes, 1):
        with store_session() as db:
            files.update(_messages(db, inbox))
        _progress(store_session, export_id, int(80 * done / max(len(inboxes), 1)))
    with store_session() as db:
        ids = [i.id for i in inboxes]
        files["contacts.vcf"] = _contacts(db, ids)
        files["calendar.ics"] = _calendar(db, ids)
        files["tasks.json"] = _tasks(db, ids)
        files["audit.json"] = _audit(db, tenant.id, scope, user_id)
        files.update(_files(db, tenant.id, inboxes, user_id if scope == "user" else None))
    manifest = {"export_id": export_id, "scope": scope, "tenant_id": tenant.id, "created_at": utcnow().isoformat(),
                "files": {name: {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
                          for name, body in sorted(files.items())}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
        zf.writestr("manifest.json", _json(manifest))
    return out.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str).encode()


def _inboxes(db: Session, tenant_id: str, scope: str, user_id: str | None) -> list[Inbox]:
    query = select(Inbox).where(Inbox.tenant_id == tenant_id, Inbox.status != "deleted")
    if scope == "user":
        query = query.where(Inbox.id.in_(select(InboxMember.inbox_id).where(InboxMember.user_id == user_id)))
    return list(db.scalars(query.order_by(Inbox.address)))


def _account(db: Session, tenant: Tenant, scope: str, user_id: str | None, inboxes: list[Inbox]) -> dict:
    users = db.scalars(select(User).where(User.tenant_id == tenant.id) if scope == "tenant"
                       else select(User).where(User.id == user_id))
    return {"tenant": {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at},
            "users": [{"id": u.id, "email": u.email, "name": u.name, "role": u.role, "status": u.status,
                       "created_at": u.created_at} for u in users],
            "inboxes": [{"id": i.id, "address": i.address, "display_name": i.display_name,
                         "created_at": i.created_at} for i in inboxes]}


def _messages(db: Session, inbox: Inbox) -> dict[str, bytes]:
    rows = db.execute(select(Message.id, MessageRaw.raw).join(MessageRaw, MessageRaw.message_id == Message.id)
                      .where(Message.inbox_id == inbox.id).order_by(Message.id))
    return {f"inboxes/{inbox.address}/{row.id}.eml": bytes(row.raw) for row in rows}


def _contacts(db: Session, inbox_ids: list[str]) -> bytes:
    from appliance.services.workspace import vcards

    rows = db.scalars(select(Contact).where(Contact.inbox_id.in_(inbox_ids or [""])).order_by(Contact.id))
    return "".join(vcards.to_vcard(db, contact) for contact in rows).encode()


def _calendar(db: Session, inbox_ids: list[str]) -> bytes:
    from appliance.services.workspace import calendar

    cal = calendar.new_calendar(name="Gentbox export")
    for event in db.scalars(select(CalendarEvent).where(CalendarEvent.inbox_id.in_(inbox_ids or [""]))
                            .order_by(CalendarEvent.id)):
        for component in calendar.components(event):
            cal.add_component(component)
    cal.add_missing_timezones()
    return cal.to_ical()


def _tasks(db: Session, inbox_ids: list[str]) -> bytes:
    from appliance.services.workspace import tasks

    rows = list(db.scalars(select(Task).where(Task.inbox_id.in_(inbox_ids or [""])).order_by(Task.id)))
    zones = tasks.zones_of(db, rows)
    return _json([{**tasks.task_to_dict(t, zones.get(t.inbox_id)), "inbox_id": t.inbox_id} for t in rows])


def _files(db: Session, tenant_id: str, inboxes: list[Inbox], user_id: str | None) -> dict[str, bytes]:
    """The files of the exported inboxes (and, for a person, those they created elsewhere in the
    tenant): every version's bytes from the blob store at files/<address>/<file id>/<version>/<name>,
    and files.json describing them (folder, versions, digests, provenance)."""
    from sqlalchemy import or_

    from appliance.models import File, FileVersion, Folder
    from appliance.services.workspace import blobs, files as files_area

    mine = File.inbox_id.in_([i.id for i in inboxes] or [""])
    if user_id:
        mine = or_(mine, File.created_by == user_id)
    addresses = dict(db.execute(select(Inbox.id, Inbox.address).where(Inbox.tenant_id == tenant_id)).all())
    folders = dict(db.execute(select(Folder.id, Folder.name).where(Folder.tenant_id == tenant_id)).all())
    out: dict[str, bytes] = {}
    listed = []
    for file in db.scalars(select(File).where(File.tenant_id == tenant_id, mine).order_by(File.id)):
        versions = list(db.scalars(select(FileVersion).where(FileVersion.file_id == file.id)
                                   .order_by(FileVersion.version)))
        for version in versions:
            path = f"files/{addresses.get(file.inbox_id, file.inbox_id)}/{file.id}/{version.version}/{file.name}"
            out[path] = blobs.read_all(db, version.blob_id)
        listed.append({**files_area.file_to_dict(file), "folder_name": folders.get(file.folder_id),
                       "versions": [files_area.version_to_dict(v) for v in versions]})
    out["files.json"] = _json(listed)
    return out


def _audit(db: Session, tenant_id: str, scope: str, user_id: str | None) -> bytes:
    query = select(AuditEntry).where(AuditEntry.chain == tenant_id)
    if scope == "user":
        query = query.where(AuditEntry.actor_id == user_id)
    return _json([audit.present(e) for e in db.scalars(query.order_by(AuditEntry.seq))])
