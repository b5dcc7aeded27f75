"""Idempotency-Key: the first answer to a POST is stored and replayed for 24 hours.

Answers can carry secrets shown only once (a new agent token, session tokens), so stored
bodies are sealed with a key derived from the appliance secret, never kept in the clear.
"""
from __future__ import annotations

import datetime as dt
import base64
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, ValidationError
from appliance.models import IdempotencyRecord
from appliance.security import seal, unseal

TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: dict | None


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > 200 or not key.isprintable():
        raise ValidationError("Idempotency-Key must be 1 to 200 printable characters",
                              field="Idempotency-Key")
    return key


_PURPOSE = "idempotency-answers"


def _seal(secret_key: str, principal: str, key: str, body: dict | None) -> str:
    if body is None:
        return ""
    sealed = seal(secret_key, _PURPOSE, json.dumps(body).encode(), f"{principal}\n{key}")
    return base64.b64encode(sealed).decode()


def _unseal(secret_key: str, principal: str, key: str, stored: str) -> dict | None:
    if not stored:
        return None
    return json.loads(unseal(secret_key, _PURPOSE, base64.b64decode(stored), f"{principal}\n{key}"))


def find(db: Session, secret_key: str, principal: str, key: str, req_hash: str) -> StoredAnswer | None:
    """The stored answer for this key, None when unused; 409 when used with another body."""
    record = db.get(IdempotencyRecord, (principal, key))
    if record is None or record.created_at < utcnow() - TTL:
        return None
    if record.request_hash != req_hash:
        raise ConflictError("This Idempotency-Key was already used with a different request.",
                            code="idempotency_conflict", field="Idempotency-Key",
                            fix="Use a new Idempotency-Key for a different request.")
    return StoredAnswer(record.status_code, _unseal(secret_key, principal, key, record.body))


def save(db: Session, secret_key: str, principal: str, key: str, req_hash: str, status_code: int,
         body: dict | None) -> None:
    """Record the answer in the caller's unit of work (so it commits with the change itself).

    Only an expired record under the same key is replaced. A live one means a concurrent request
    with this key committed first: the insert then fails on the primary key and the caller
    replays that answer instead of committing the change a second time.
    """
    db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.principal == principal,
                                               IdempotencyRecord.key == key,
                                               IdempotencyRecord.created_at < utcnow() - TTL))
    # A Core insert, not db.add: `find` may have loaded the expired record into the session, and
    # an ORM add under the same primary key would fail as a flush conflict, not an IntegrityError.
    db.execute(insert(IdempotencyRecord).values(
        principal=principal, key=key, request_hash=req_hash, status_code=status_code,
        body=_seal(secret_key, principal, key, body), created_at=utcnow()))


def purge_expired(db: Session) -> int:
    return db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - TTL)).rowcount
