"""Usage and caps (issue 22): metered counters in hour buckets, and the caps set per level."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class UsageCounter(Base):
    """How much of one metric a tenant (inbox_id '') or one inbox used in one hour.

    Written by one upsert per metered action (services/governance/usage.py `record`), read by
    summing a period's buckets. Gauges (storage bytes) live in bucket 0 and carry the running
    total: each store adds the bytes, each delete subtracts them."""

    __tablename__ = "usage_counters"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(40), primary_key=True)  # '' for the tenant as a whole
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # bucket start, unix seconds; 0: gauge
    value: Mapped[int] = mapped_column(BigInteger, default=0)


Index("ix_usage_counters_hour", UsageCounter.hour, UsageCounter.metric)


class UsageCap(Base):
    """One cap: sends (per hour/day/month) of a tenant, inbox or token; mailbox or files bytes of
    a tenant or inbox; spend of a tenant. `subject_id` is the ten_/inb_/tok_ id of its level."""

    __tablename__ = "usage_caps"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # cap_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # sends | mailbox | files | spend
    level: Mapped[str] = mapped_column(String(16))  # tenant | inbox | token
    subject_id: Mapped[str] = mapped_column(String(40))
    per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    per_month: Mapped[int | None] = mapped_column(Integer, nullable=True)
    limit_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    monthly_limit: Mapped[float | None] = mapped_column(Float, nullable=True)
    mode: Mapped[str] = mapped_column(String(16), default="enforce")  # enforce | allow_and_bill
    alert_thresholds: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_usage_caps_subject", UsageCap.tenant_id, UsageCap.kind, UsageCap.subject_id, unique=True)
