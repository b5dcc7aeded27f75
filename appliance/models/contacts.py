"""Contacts of an inbox and the shares of cards between inboxes (contract section 11, issue 17).

A contact's addresses live in their own rows (`contact_emails`), unique per inbox, so one person
is one contact per inbox even when 20 sends race to create it: the unique index decides.
`search_text` is what `q` searches (names, addresses, phone digits, company), kept by the
service; on PostgreSQL a trigram GIN index serves substring search, on SQLite an FTS5 trigram
table (migration 0021). Relationship figures are not stored: they are computed from messages.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

SHARE_TYPES = ("offer", "request")
SHARE_STATUSES = ("pending", "accepted", "declined", "expired")


class Contact(Base):
    """One card of one inbox's address book (`ctc_`)."""

    __tablename__ = "contacts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    uid: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the vCard UID it came with
    full_name: Mapped[str] = mapped_column(String(300), default="")
    company: Mapped[str] = mapped_column(String(300), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    phones: Mapped[list] = mapped_column(JSON, default=list)  # [{"label", "number"}]
    labels: Mapped[list] = mapped_column(JSON, default=list)  # names, registered in `labels`
    anniversaries: Mapped[list] = mapped_column(JSON, default=list)  # [{"type", "date"}]
    origin: Mapped[dict] = mapped_column(JSON, default=dict)  # {"source": manual|auto|import|share, ...}
    search_text: Mapped[str] = mapped_column(Text, default="")
    last_outbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_contacts_tenant_id", Contact.tenant_id, Contact.id)
Index("ix_contacts_inbox_name", Contact.inbox_id, Contact.full_name, Contact.id)
Index("uq_contacts_inbox_uid", Contact.inbox_id, Contact.uid, unique=True,
      sqlite_where=Contact.uid.isnot(None), postgresql_where=Contact.uid.isnot(None))


class ContactEmail(Base):
    """One address of a contact: lower case, the domain in punycode; unique per inbox."""

    __tablename__ = "contact_emails"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(320))
    label: Mapped[str] = mapped_column(String(64), default="")
    position: Mapped[int] = mapped_column(default=0)


Index("uq_contact_emails_inbox_address", ContactEmail.inbox_id, ContactEmail.address, unique=True)


class ContactShare(Base):
    """An offer of a card to another inbox of the tenant, or a request for one (`shr_`)."""

    __tablename__ = "contact_shares"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # offer|request
    status: Mapped[str] = mapped_column(String(16), default="pending")
    from_inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    to_inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the offered card
    contact_address: Mapped[str] = mapped_column(String(320), default="")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)  # note, labels, the card offered
    result_contact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # pending: +30 d; resolved: +7 d
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_contact_shares_tenant_id", ContactShare.tenant_id, ContactShare.id)
Index("ix_contact_shares_to", ContactShare.to_inbox_id, ContactShare.status)
Index("ix_contact_shares_from", ContactShare.from_inbox_id, ContactShare.status)
Index("ix_contact_shares_expires", ContactShare.expires_at)
