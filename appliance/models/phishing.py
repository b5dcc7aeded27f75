"""The per-tenant naive Bayes model of phishing detection (issue 21 point 3).

One row per tenant: how many messages people marked as phishing and as not phishing, and for each
token the number of those messages it appeared in ({token: [phishing, safe]}). The model is small
(capped in services/intelligence/bayes.py) and read whole per batch of messages; a tenant's row is
never read for another tenant, so one tenant's marks never move another's verdicts.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class PhishingModel(Base):
    __tablename__ = "phishing_models"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    phishing_docs: Mapped[int] = mapped_column(default=0)
    safe_docs: Mapped[int] = mapped_column(default=0)
    tokens: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
