"""App passwords: what a person's mail client (IMAP, SMTP submission) signs in with."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class AppPassword(Base):
    """A `gapp_` secret for one inbox and one user, shown once; only its SHA-256 is stored (it is
    264 random bits, so a fast digest is as safe as argon2 is for a chosen password)."""

    __tablename__ = "app_passwords"
    __table_args__ = (Index("ix_app_passwords_tenant_id", "tenant_id", "id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
