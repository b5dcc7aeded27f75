"""The audit bundle (issue 23 point 7): one zip an auditor can read for a period.

`GET /v1/compliance/audit-bundle/?from&to` (owners and admins) answers a zip built on request:
- `audit_log.json`: the tenant's entries in [from, to); `verification.json`: the chain verified;
- `access_review.json`: users (role, status, second factor), agent tokens (scopes, status, last use);
- `configuration.json`: domains with their DKIM keys, TLS (MTA-STS mode, the appliance's
  certificate files present), the retention policy, the last backup the data dir records;
- `changes.json`: the period's entries that changed something (all but sign-ins and checkpoints);
- `security_signals.json`: failed sign-ins of the tenant's users, disabled webhooks;
- `control_map.json`: SOC 2 criteria CC6.1, CC6.2, CC6.3, CC7.2, CC8.1 -> the evidence files;
- `manifest.json`: the SHA-256 of every file.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.models import AgentToken, Alert, AuditEntry, BOX_CHAIN, DkimKey, Domain, User, UserTotp
from appliance.services.governance import audit, erasure, retention
from appliance.services.identity.auth import require_manager

SIGN_IN_ACTIONS = ("access.log_in", "webui.login")
CONTROL_MAP = {
    "CC6.1": {"title": "Logical access security: who can reach what, with which credentials",
              "evidence": ["access_review.json", "configuration.json"]},
    "CC6.2": {"title": "User registration and authorisation before access is granted",
              "evidence": ["access_review.json", "changes.json"]},
    "CC6.3": {"title": "Access removed or changed when roles change (revocations, role changes)",
              "evidence": ["changes.json", "access_review.json"]},
    "CC7.2": {"title": "Monitoring for anomalies and security events",
              "evidence": ["security_signals.json", "verification.json", "audit_log.json"]},
    "CC8.1": {"title": "Changes authorised, recorded and traceable",
              "evidence": ["changes.json", "audit_log.json", "verification.json"]},
}


def audit_bundle(db: Session, settings: Settings, principal: Any, frm: dt.datetime | None,
                 to: dt.datetime | None) -> bytes:
    """The zip for the caller's tenant and period (owners and admins)."""
    require_manager(principal)
    tenant_id = principal.tenant_id
    entries = [audit.present(e) for e in _entries(db, tenant_id, frm, to)]
    files = {
        "audit_log.json": entries,
        "verification.json": audit.verify(db, settings.secret_key, tenant_id).to_dict()
        | {"public_key": audit.public_key_b64(settings.secret_key)},
        "access_review.json": _access_review(db, tenant_id),
        "configuration.json": _configuration(db, settings, tenant_id),
        "changes.json": [e for e in entries if not e["action"].startswith(SIGN_IN_ACTIONS)
                         and e["action"] not in (audit.CHECKPOINT, retention.PRUNED)],
        "security_signals.json": _signals(db, tenant_id, frm, to),
        "control_map.json": CONTROL_MAP,
    }
    bodies = {name: json.dumps(value, indent=2, default=str, ensure_ascii=False).encode()
              for name, value in files.items()}
    manifest = {"tenant_id": tenant_id, "from": frm, "to": to, "created_at": utcnow(),
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in bodies.items()}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in bodies.items():
            zf.writestr(name, body)
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
    return out.getvalue()


def _entries(db: Session, chain: str, frm: dt.datetime | None, to: dt.datetime | None) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.chain == chain)
    if frm is not None:
        query = query.where(AuditEntry.at >= frm)
    if to is not None:
        query = query.where(AuditEntry.at < to)
    return list(db.scalars(query.order_by(AuditEntry.seq)))


def _access_review(db: Session, tenant_id: str) -> dict:
    totp = set(db.scalars(select(UserTotp.user_id)))
    users = [{"user_id": u.id, "email": u.email, "name": u.name, "role": u.role, "status": u.status,
              "totp": u.id in totp, "created_at": u.created_at, "password_changed_at": u.password_changed_at}
             for u in db.scalars(select(User).where(User.tenant_id == tenant_id).order_by(User.created_at))]
    tokens = [{"token_id": t.id, "label": t.label, "inbox_id": t.inbox_id, "scopes": t.scopes,
               "requires_approval": t.requires_approval, "status": t.status, "created_by": t.created_by,
               "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at,
               "revoked_at": t.revoked_at}
              for t in db.scalars(select(AgentToken).where(AgentToken.tenant_id == tenant_id).order_by(AgentToken.id))]
    return {"users": users, "tokens": tokens}


def _configuration(db: Session, settings: Settings, tenant_id: str) -> dict:
    domains = []
    for d in db.scalars(select(Domain).where(Domain.tenant_id == tenant_id).order_by(Domain.name)):
        keys = [{"selector": k.selector, "algorithm": k.algorithm, "status": k.status, "created_at": k.created_at,
                 "activated_at": k.activated_at}
                for k in db.scalars(select(DkimKey).where(DkimKey.domain_id == d.id).order_by(DkimKey.created_at))]
        domains.append({"name": d.name, "status": d.status, "dmarc_policy": d.dmarc_policy,
                        "verified_at": d.verified_at, "dkim_keys": keys})
    return {"tls": {"smtp_starttls_certificate": bool(settings.tls_cert_file),
                    "public_url": settings.base_url, "https": settings.base_url.startswith("https://")},
            "domains": domains, "retention": retention.get_policy(db, tenant_id),
            "last_backup": last_backup(settings), "erasure_areas": [a.name for a in erasure.AREAS]}


def last_backup(settings: Settings) -> dict | None:
    """What `gentbox backup` last recorded in the data dir (appliance/backup.py), if anything."""
    path = settings.data_dir / "last-backup.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _signals(db: Session, tenant_id: str, frm: dt.datetime | None, to: dt.datetime | None) -> dict:
    emails = [e.lower() for e in db.scalars(select(User.email).where(User.tenant_id == tenant_id))]
    query = select(AuditEntry).where(AuditEntry.chain.in_([tenant_id, BOX_CHAIN]),
                                     AuditEntry.action.endswith(".failed"),
                                     or_(AuditEntry.tenant_id == tenant_id,
                                         *(erasure.mentions(e, AuditEntry.pii) for e in emails or ["\0"])))
    if frm is not None:
        query = query.where(AuditEntry.at >= frm)
    if to is not None:
        query = query.where(AuditEntry.at < to)
    failed = [audit.present(e) for e in db.scalars(query.order_by(AuditEntry.at))]
    disabled = [{"alert_id": a.id, "inbox_id": a.inbox_id, "target": a.target, "disabled_reason": a.disabled_reason,
                 "failing_since": a.failing_since, "updated_at": a.updated_at}
                for a in db.scalars(select(Alert).where(Alert.tenant_id == tenant_id, Alert.delivery_type == "webhook",
                                                        Alert.enabled.is_(False)).order_by(Alert.id))]
    return {"failed_sign_ins": failed, "disabled_webhooks": disabled}
