"""IMAP's own rows (issue 25): each folder's UIDVALIDITY and next UID, and the UID of each message
in each folder.

A folder's contents are derived from the messages (INBOX: received mail, a label folder: the
label, ...; appliance/services/mail/mailboxes.py), but UIDs must never change or be reused, so
they are kept here rather than derived from ids: a message gets the folder's `uid_next` when it is
first seen there, and its row goes when it leaves; `uid_next` only grows.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class ImapMailbox(Base):
    """One IMAP folder of one inbox (`imb_`), by its name (INBOX, Sent, ..., a label's name)."""

    __tablename__ = "imap_mailboxes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    uid_validity: Mapped[int] = mapped_column(BigInteger)
    uid_next: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_imap_mailboxes_tenant_id", ImapMailbox.tenant_id, ImapMailbox.id)
Index("uq_imap_mailboxes_inbox_name", ImapMailbox.inbox_id, ImapMailbox.name, unique=True)


class ImapUid(Base):
    """A message's UID in one folder, with the IMAP flags the store has no column for."""

    __tablename__ = "imap_uids"
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("imap_mailboxes.id", ondelete="CASCADE"), primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    flags: Mapped[list] = mapped_column(JSON, default=list)  # \Flagged, \Answered, \Deleted, keywords


Index("uq_imap_uids_mailbox_message", ImapUid.mailbox_id, ImapUid.message_id, unique=True)
