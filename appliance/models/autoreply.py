"""The per-sender window of automatic replies (issue 27; shared with the workflows area).

One row per (inbox, sender, purpose): when the inbox last answered that sender automatically for
that purpose (`out_of_office`, or a workflow's own name). RFC 3834 asks an automatic responder
not to answer the same sender again within a period (we use 7 days); the unique key makes that
check-and-set one atomic upsert, so two workers never both answer.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class AutoReplyWindow(Base):
    __tablename__ = "auto_reply_windows"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))  # lower case
    purpose: Mapped[str] = mapped_column(String(64))
    last_sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_auto_reply_windows_key", AutoReplyWindow.inbox_id, AutoReplyWindow.sender, AutoReplyWindow.purpose,
      unique=True)
Index("ix_auto_reply_windows_tenant_id", AutoReplyWindow.tenant_id, AutoReplyWindow.id)
