"""Imports of an existing mailbox's history from another IMAP server (contract section 20)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class MailImport(Base):
    """One import job: where from, what, how far (per folder: UIDVALIDITY and the last UID done).
    The password is sealed while the job runs and cleared when it ends."""

    __tablename__ = "mail_imports"
    __table_args__ = (Index("ix_mail_imports_tenant_id", "tenant_id", "id"),
                      Index("ix_mail_imports_status", "status", "lease_until"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))  # tls | starttls | none
    username: Mapped[str] = mapped_column(String(320))
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    folders: Mapped[list] = mapped_column(JSON, default=list)  # [] = every folder
    since: Mapped[str | None] = mapped_column(String(10), nullable=True)  # YYYY-MM-DD: only mail from then on
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|completed|failed
    progress: Mapped[dict] = mapped_column(JSON, default=dict)  # folder -> {uidvalidity, last_uid, total, done}
    imported: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # already here (Message-ID or digest)
    error: Mapped[str] = mapped_column(Text, default="")
    lease_owner: Mapped[str] = mapped_column(String(80), default="")
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MailImportItem(Base):
    """A message an import brought in, by its key (Message-ID, or the digest of a message without
    one): the same message met again (another folder, another run) adds a label, not a copy."""

    __tablename__ = "mail_import_items"
    __table_args__ = (Index("uq_mail_import_items_key", "inbox_id", "key", unique=True),
                      Index("ix_mail_import_items_tenant_id", "tenant_id", "id"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))  # sha256 hex of the Message-ID, or of the bytes
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
