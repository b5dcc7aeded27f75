"""Rows of issue 20 points 3-5: sender rules and forwarding per inbox, and follow-up sequences.

`sender_rules` (one row per inbox, none: open both ways) holds who may write to the inbox
(inbound) and whom it may write to (outbound): a mode (`open`/`allowlist`/`blocklist`) and the
patterns (`@domain`, `*.domain`, an address). `inbox_forwarding` (one row per inbox) holds where
received mail is forwarded. `sequences` (`seq_`) are timed follow-ups sent from one inbox;
`sequence_enrollments` (`sqe_`) are one contact's way through one sequence, its next step planned
in `schedules` (appliance/services/automation/sequences.py).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

SENDER_MODES = ("open", "allowlist", "blocklist")


class SenderRules(Base):
    """An inbox's inbound and outbound allow/block lists."""

    __tablename__ = "sender_rules"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbound_mode: Mapped[str] = mapped_column(String(16), default="open")
    outbound_mode: Mapped[str] = mapped_column(String(16), default="open")
    inbound_patterns: Mapped[list] = mapped_column(JSON, default=list)
    outbound_patterns: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_sender_rules_tenant_id", SenderRules.tenant_id, SenderRules.inbox_id)


class InboxForwarding(Base):
    """Where an inbox forwards what it receives (SRS envelope, ARC seal)."""

    __tablename__ = "inbox_forwarding"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    default_address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    keep_copy: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_inbox_forwarding_tenant_id", InboxForwarding.tenant_id, InboxForwarding.inbox_id)


class Sequence(Base):
    """A follow-up sequence (`seq_`): emails sent from one inbox, each `delay_days` after the last."""

    __tablename__ = "sequences"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    exit_on_reply: Mapped[bool] = mapped_column(Boolean, default=True)
    emails: Mapped[list] = mapped_column(JSON, default=list)  # [{delay_days, subject, body, template_id}]
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_sequences_tenant_id", Sequence.tenant_id, Sequence.id)
Index("ix_sequences_inbox_id", Sequence.inbox_id, Sequence.id)


class SequenceEnrollment(Base):
    """One contact in one sequence (`sqe_`): the next step, the thread, and how it ended."""

    __tablename__ = "sequence_enrollments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    sequence_id: Mapped[str] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # where the steps go (the contact's first address)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|completed|exited|cancelled
    exit_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # replied|bounced|unsubscribed
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    thread_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_message_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_sequence_enrollments_tenant_id", SequenceEnrollment.tenant_id, SequenceEnrollment.id)
Index("ix_sequence_enrollments_sequence", SequenceEnrollment.sequence_id, SequenceEnrollment.id)
Index("ix_sequence_enrollments_contact", SequenceEnrollment.contact_id, SequenceEnrollment.status)
Index("ix_sequence_enrollments_inbox_status", SequenceEnrollment.inbox_id, SequenceEnrollment.status)
