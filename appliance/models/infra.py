"""Store-backed infrastructure: events, rate-limit counters, idempotency records."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Event(Base):
    """An append-only record of a state change, written in the same transaction as the change.

    `seq` increases in commit order (services/automation/events.py says how); readers page by it."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # evt_, time-sortable
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    inbox_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # user, agent, system, smtp, worker, workflow
    actor_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # usr_/tok_/… or None
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict] = mapped_column(JSON, default=dict)


Index("ix_events_inbox_id", Event.inbox_id, Event.seq)
Index("ix_events_tenant_id", Event.tenant_id, Event.seq)


class EventCounter(Base):
    """One row: the last seq given to an event. Taking the next numbers locks it until commit."""

    __tablename__ = "event_counter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # always 1
    last_seq: Mapped[int] = mapped_column(BigInteger)


class RateCounter(Base):
    """A fixed-window request counter, shared by every process through the store."""

    __tablename__ = "rate_counters"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # window start, unix seconds
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires: Mapped[int] = mapped_column(BigInteger, index=True)


class IdempotencyRecord(Base):
    """The first answer to a POST with an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_records"
    principal: Mapped[str] = mapped_column(String(60), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
