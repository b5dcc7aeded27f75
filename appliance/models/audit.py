"""The audit log (issue 23): append-only, hash-chained, separate from events.

One chain per tenant (`chain` = the tenant id) and one for the box (`chain` = "box"), so a
tenant's log can be exported and erased on its own. Each entry's `hash` is SHA-256 over the
canonical JSON of its fields and the previous entry's hash; personal data (the actor's label,
the IP, the changes) lives in `pii`, outside the hash, which covers only `pii_digest` (a keyed
HMAC of it): erasure clears `pii` and the chain still verifies. Database triggers refuse any
UPDATE except clearing `pii`, and every DELETE (migration 0028). `audit_heads` holds each
chain's last seq and hash: the row writers lock to append, and what truncating the tail would
contradict.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

BOX_CHAIN = "box"


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # aud_
    chain: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # no FK: outlives its tenant
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    edge: Mapped[str] = mapped_column(String(16))  # api | webui | cli | smtp | worker | workflow
    pii: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {actor_label, ip, changes}; erasure clears it
    pii_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


Index("uq_audit_entries_chain_seq", AuditEntry.chain, AuditEntry.seq, unique=True)
Index("ix_audit_entries_tenant_at", AuditEntry.tenant_id, AuditEntry.at)


class AuditHead(Base):
    __tablename__ = "audit_heads"
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
