"""The web UI's own state: an admin's optional TOTP second factor."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class UserTotp(Base):
    """A user's TOTP secret (sealed with the appliance key); enabled once a code confirmed it."""

    __tablename__ = "user_totp"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last time step a code was accepted for: a code works once (no replay in its 30 s).
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str] = mapped_column(String(64), default="")
