"""The outbound queue: one row per (message, recipient domain), one row per recipient.

A queue row is what a worker claims (with a lease) and delivers in one SMTP transaction; its
recipients carry their own status and last SMTP reply, which the API shows as `delivery[]`.
The appliance's own mail (sign-up links) rides the same queue with system_mail_id set.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class OutboundQueue(Base):
    __tablename__ = "outbound_queue"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"),
                                                   nullable=True, index=True)
    system_mail_id: Mapped[str | None] = mapped_column(ForeignKey("system_mail.id", ondelete="CASCADE"),
                                                       nullable=True, index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    inbox_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    domain: Mapped[str] = mapped_column(String(255))  # the recipients' domain (ASCII/punycode)
    mail_from: Mapped[str] = mapped_column(String(320), default="")  # envelope sender; "" is <>
    # queued (never tried) | deferred (waiting for a retry) | delivering (leased) | done
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    last_reply: Mapped[str] = mapped_column(Text, default="")
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # 0 for every send; 1 for broadcast rows, which the worker claims only after due priority-0 rows.
    priority: Mapped[int] = mapped_column(default=0, server_default="0")


Index("ix_outbound_queue_due", OutboundQueue.status, OutboundQueue.next_attempt_at)


class OutboundRecipient(Base):
    __tablename__ = "outbound_recipients"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("outbound_queue.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    position: Mapped[int] = mapped_column(default=0)  # order in the message's to/cc/bcc
    recipient: Mapped[str] = mapped_column(String(320))
    # queued | deferred | delivered | bounced | failed (given up without a bounce, e.g. cancelled)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    smtp_reply: Mapped[str] = mapped_column(Text, default="")
    remote_host: Mapped[str] = mapped_column(String(255), default="")


class MtaStsPolicy(Base):
    """A recipient domain's MTA-STS policy (RFC 8461) as last fetched, shared by every worker:
    refreshed when its _mta-sts TXT id changes or max_age has passed (appliance.services.mail.mtasts_policy)."""

    __tablename__ = "mta_sts_policies"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)  # ASCII/punycode, lower case
    policy_id: Mapped[str] = mapped_column(String(32))  # the TXT record's id= when fetched
    mode: Mapped[str] = mapped_column(String(16))  # enforce | testing | none
    mx: Mapped[list] = mapped_column(JSON, default=list)  # patterns: "mx.example.com", "*.example.net"
    max_age: Mapped[int] = mapped_column()  # seconds from fetched_at
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
