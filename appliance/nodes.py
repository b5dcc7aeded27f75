"""Several nodes on one store (docs/scaling.md): is a store initialised already, and does a new
node's secret key open what the first node sealed?

Everything the processes share lives in the store (sessions, tokens, rate counters, the queue and
its leases, webhook deliveries, event cursors, heartbeats). The one thing a node brings with it is
the secret key: it seals the DKIM private keys, alert, workflow and import secrets, TOTP seeds and
idempotent answers, and derives the audit log's HMAC and checkpoint signing keys. A node started
with another key would fail at its first signature, so `gentbox init` checks the key on joining.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.models import AuditEntry, DkimKey, User


def is_initialised(db: Session) -> bool:
    """Does the store have an operator already (a first node ran `gentbox init`)?"""
    return db.scalar(select(User.id).where(User.is_operator.is_(True)).limit(1)) is not None


def secret_key_problem(db: Session, settings: Settings) -> str | None:
    """Why the settings' secret key is not the key the store was written with (None: it opens what
    it can find; a store with no sealed value and no audit entry yet has nothing to check it against)."""
    from appliance.services.domains import dkim
    from appliance.services.governance import audit
    key = db.scalar(select(DkimKey).order_by(DkimKey.created_at.desc()).limit(1))
    if key is not None:
        try:
            dkim.decrypt_private_key(settings, bytes(key.private_key_enc), key.id)
        except (InvalidTag, ValueError):
            return "it does not open the DKIM private keys in the store"
    entry = db.scalar(select(AuditEntry).where(AuditEntry.pii.is_not(None))
                      .order_by(AuditEntry.at.desc()).limit(1))
    if entry is not None and audit.pii_digest(settings.secret_key, entry.pii) != entry.pii_digest:
        return "the audit log's entries were written with another key"
    return None
