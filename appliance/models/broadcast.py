"""Broadcast rows (issue 16 point 2, contract section 9): a broadcast to the contacts of a label,
its per-recipient outcome, and the addresses that unsubscribed from an inbox (RFC 8058).

A broadcast's recipients each get their own message through the one send path; a recipient row
names the message sent to it, or why it was skipped (`unsubscribed`, `bounced`, `no_address`).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Broadcast(Base):
    """One broadcast (`bct_`): held (waiting for its approval), queued, completed or rejected."""

    __tablename__ = "broadcasts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    label_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict] = mapped_column(JSON, default=dict)  # subject, bodies, template_id, template_values
    recipients: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    token_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_broadcasts_tenant_id", Broadcast.tenant_id, Broadcast.id)


class BroadcastRecipient(Base):
    """One contact's address in a broadcast (`bcr_`): its message, or why it was skipped."""

    __tablename__ = "broadcast_recipients"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    skip_reason: Mapped[str] = mapped_column(Text, default="")


class Unsubscribe(Base):
    """An address that asked an inbox to send it no more broadcasts (`uns_`)."""

    __tablename__ = "unsubscribes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_unsubscribes_inbox_address", Unsubscribe.inbox_id, Unsubscribe.address, unique=True)
