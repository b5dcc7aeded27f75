"""Per-domain DKIM keys: generation, encrypted storage, signing-key lookup and rotation."""
from __future__ import annotations

import base64
import datetime as dt
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError
from appliance.ids import new_id
from appliance.models import DkimKey, Domain
from appliance.security import seal, unseal

FIRST_SELECTOR = "gent"
ROTATION_GRACE = dt.timedelta(days=7)
KEY_BITS = 2048


def encrypt_private_key(settings: Settings, pem: bytes, key_id: str) -> bytes:
    return seal(settings.secret_key, "dkim-private-keys", pem, key_id)


def decrypt_private_key(settings: Settings, blob: bytes, key_id: str) -> bytes:
    return unseal(settings.secret_key, "dkim-private-keys", blob, key_id)


def new_key(db: Session, settings: Settings, domain: Domain, selector: str, status: str) -> DkimKey:
    """Generate an RSA-2048 key pair for domain and store it (private part encrypted)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    key = DkimKey(id=new_id("dk"), domain_id=domain.id, selector=selector,
                  public_key=base64.b64encode(public).decode(), status=status, created_at=utcnow(),
                  activated_at=utcnow() if status == "active" else None)
    key.private_key_enc = encrypt_private_key(settings, pem, key.id)
    db.add(key)
    return key


def listed_keys(db: Session, domain_id: str) -> list[DkimKey]:
    """Keys whose records the owner should publish: active, pending and still-retiring ones."""
    now = utcnow()
    keys = db.scalars(select(DkimKey).where(DkimKey.domain_id == domain_id,
                                            DkimKey.status.in_(("active", "pending", "retiring")))
                      .order_by(DkimKey.created_at)).all()
    # Read-only: a key past its grace period is left out here and marked retired by a writer.
    return [k for k in keys if not (k.status == "retiring" and k.retire_at is not None and k.retire_at <= now)]


def retire_expired(db: Session, domain_id: str) -> None:
    """Mark retiring keys whose grace period has passed as retired."""
    db.execute(update(DkimKey).where(DkimKey.domain_id == domain_id, DkimKey.status == "retiring",
                                     DkimKey.retire_at <= utcnow()).values(status="retired"))


def signing_key(db: Session, settings: Settings, domain_id: str) -> tuple[str, bytes] | None:
    """(selector, private key PEM) of the domain's active key, for the outbound signer."""
    key = db.scalar(select(DkimKey).where(DkimKey.domain_id == domain_id, DkimKey.status == "active"))
    if key is None:
        return None
    return key.selector, decrypt_private_key(settings, key.private_key_enc, key.id)


def _next_selector(db: Session, domain_id: str) -> str:
    used = set(db.scalars(select(DkimKey.selector).where(DkimKey.domain_id == domain_id)))
    numbers = [int(m.group(1)) for s in used if (m := re.fullmatch(r"gent(\d+)", s))]
    return f"gent{max(numbers + [1]) + 1}"


def start_rotation(db: Session, settings: Settings, domain: Domain) -> DkimKey:
    """Add a pending key under a new selector; signing switches once DNS shows it."""
    pending = db.scalar(select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.status == "pending"))
    if pending is not None:
        raise ConflictError(f"A rotation is already waiting for {pending.selector}._domainkey to be published.",
                            fix=f"Publish the {pending.selector}._domainkey record, then verify the domain.")
    return new_key(db, settings, domain, _next_selector(db, domain.id), "pending")


def finish_rotation(db: Session, domain_id: str, published_selectors: set[str]) -> DkimKey | None:
    """Promote a pending key whose record is published; the old key retires after a grace period."""
    keys = db.scalars(select(DkimKey).where(DkimKey.domain_id == domain_id)).all()
    pending = next((k for k in keys if k.status == "pending" and k.selector in published_selectors), None)
    if pending is None:
        return None
    now = utcnow()
    for key in keys:
        if key.status == "active":
            key.status, key.retire_at = "retiring", now + ROTATION_GRACE
    pending.status, pending.activated_at = "active", now
    return pending
