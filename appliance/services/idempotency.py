"""Idempotency-Key: the first answer to a POST is stored and replayed for 24 hours."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, ValidationError
from appliance.models import IdempotencyRecord

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


def find(db: Session, principal: str, key: str, req_hash: str) -> StoredAnswer | None:
    """The stored answer for this key, None when unused; 409 when used with another body."""
    record = db.get(IdempotencyRecord, (principal, key))
    if record is None or record.created_at < utcnow() - TTL:
        return None
    if record.request_hash != req_hash:
        raise ConflictError("This Idempotency-Key was already used with a different request.",
                            code="idempotency_conflict", field="Idempotency-Key",
                            fix="Use a new Idempotency-Key for a different request.")
    return StoredAnswer(record.status_code, json.loads(record.body) if record.body else None)


def save(db: Session, principal: str, key: str, req_hash: str, status_code: int, body: dict | None) -> None:
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
        body=json.dumps(body) if body is not None else "", created_at=utcnow()))


def purge_expired(db: Session) -> int:
    return db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - TTL)).rowcount
