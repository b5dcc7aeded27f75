"""Distribution lists (issue 16.5): a shared address (`team@…`) on a verified domain of a tenant
whose mail the listener stores once in each member inbox (appliance/services/team/lists.py).

Members are inboxes of the list's tenant only (never outside addresses, never another list), so
a list can neither send anywhere nor contain itself. Both tables carry tenant_id, so the tenancy
helper scopes them like any other row.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class DistributionList(Base):
    """One list (`dl_`): its address and name."""

    __tablename__ = "distribution_lists"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# The listener looks a list up by its address when no inbox has it (RCPT): one unique index.
Index("uq_distribution_lists_address", DistributionList.address, unique=True)
Index("ix_distribution_lists_tenant_id", DistributionList.tenant_id, DistributionList.id)


class DistributionListMember(Base):
    """One member inbox of one list."""

    __tablename__ = "distribution_list_members"
    list_id: Mapped[str] = mapped_column(ForeignKey("distribution_lists.id", ondelete="CASCADE"), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_distribution_list_members_inbox_id", DistributionListMember.inbox_id)
