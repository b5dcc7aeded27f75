"""Compliance (issue 23 points 4-6): export jobs, erasure requests and audit pruning marks.

`compliance_exports`: a person's (or a tenant's) data as a zip, built by the worker; the zip
waits sealed (AES-GCM under a key derived from the appliance secret) until its download link
expires, then the bytes are dropped. `compliance_deletions`: a right-to-erasure request; the
subject's address is kept sealed while the request waits out its grace period and cleared once
it is carried out or cancelled (only a keyed digest stays, so backups can be told which erasures
to replay). `audit_prunes`: the one row that lets retention delete the oldest audit entries of a
chain (the append-only trigger allows a DELETE only of seqs at or below a mark written in the same
transaction; migration 0035).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class ComplianceExport(Base):
    __tablename__ = "compliance_exports"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # exp_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    scope: Mapped[str] = mapped_column(String(16))  # user | tenant
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|ready|failed|expired
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # the zip, encrypted at rest
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ready_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_compliance_exports_tenant_id", ComplianceExport.tenant_id, ComplianceExport.id)
Index("ix_compliance_exports_status", ComplianceExport.status)


class ComplianceDeletion(Base):
    __tablename__ = "compliance_deletions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # del_
    tenant_id: Mapped[str] = mapped_column(String(40))  # no FK: a tenant erasure outlives its tenant
    requested_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    scope: Mapped[str] = mapped_column(String(16))  # user | tenant | address
    user_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    subject_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # cleared when done
    subject_digest: Mapped[str] = mapped_column(String(64))  # keyed HMAC: replays against a backup
    status: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled|due|running|completed|cancelled|failed
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)  # rows removed per area


Index("ix_compliance_deletions_tenant_id", ComplianceDeletion.tenant_id, ComplianceDeletion.id)
Index("ix_compliance_deletions_status", ComplianceDeletion.status, ComplianceDeletion.effective_at)


class AuditPrune(Base):
    __tablename__ = "audit_prunes"
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    through_seq: Mapped[int] = mapped_column(BigInteger)  # entries with seq <= this may be deleted
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RetentionPolicy(Base):
    """How long a tenant keeps messages, events and audit entries (None: for ever); the worker
    applies it daily (services/governance/retention.py)."""

    __tablename__ = "retention_policies"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    messages_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    events_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    audit_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_result: Mapped[dict] = mapped_column(JSON, default=dict)
