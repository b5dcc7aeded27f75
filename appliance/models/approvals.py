"""Approvals (issue 8): an agent action held until a person (or a reviewing token) decides.

An approval names its action (`action_type`, the scope that required it, e.g. `email:send`), the
resource the action made and parked (for a send: the held message, status `held`), a summary for
reviewers and whatever the action needs to go ahead. Deciding is a conditional UPDATE on a
pending row, so two concurrent decisions cannot both win.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired")


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # apr_, time-sortable
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    action_type: Mapped[str] = mapped_column(String(64))  # the held scope, e.g. email:send
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # e.g. the held msg_
    token_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the agent that asked
    token_label: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # what reviewers are shown
    payload: Mapped[dict] = mapped_column(JSON, default=dict)  # what carrying out the action needs
    # pending | approved | rejected | expired
    status: Mapped[str] = mapped_column(String(16), default="pending")
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(40), nullable=True)  # usr_/tok_
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_approvals_tenant_id", Approval.tenant_id, Approval.status, Approval.id)
Index("ix_approvals_inbox_id", Approval.inbox_id, Approval.status, Approval.id)
Index("ix_approvals_due", Approval.status, Approval.expires_at)
Index("ix_approvals_resource_id", Approval.resource_id)
