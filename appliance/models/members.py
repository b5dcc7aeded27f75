"""Inbox grants (issue 14.15): which inboxes a `member` of a tenant may read and send in.

Owners and admins use every inbox of their tenant; a member uses only the inboxes granted here
(PUT /v1/inboxes/{id}/members/). The row carries tenant_id, so the tenancy helper scopes it
like any other.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class InboxMember(Base):
    __tablename__ = "inbox_members"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    granted_by: Mapped[str | None] = mapped_column(String(40), nullable=True)  # usr_ or a system label
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_inbox_members_user_id", InboxMember.user_id, InboxMember.inbox_id)
Index("ix_inbox_members_tenant_id", InboxMember.tenant_id)
