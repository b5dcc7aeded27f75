"""Domains, inboxes, messages and the appliance's own outgoing mail.

The foundation defines the columns every later area keys on (tenant, inbox, thread, direction,
status); the mail issues extend these tables with migrations.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Domain(Base):
    """One tenant's claim on a domain name. Several tenants may hold pending claims on a name; the
    first to verify it wins (one verified row per name, enforced by a partial unique index) and
    the others' claims lapse. A pending claim expires at expires_at (read as status expired)."""

    __tablename__ = "domains"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(253))  # punycode, lower case
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|verified|lapsed
    domain_use: Mapped[str] = mapped_column(String(32), default="existing_domain")
    dmarc_policy: Mapped[str] = mapped_column(String(16), default="quarantine")
    verification_token: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last DNS check: {"<purpose>:<host>": {"status": ..., "found": [...]}}, and when it ran.
    dns_results: Mapped[dict] = mapped_column(JSON, default=dict)
    dns_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # pending claims
    lapsed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # another verified


# One claim per tenant and name (its first column serves lookups by name); one verified holder.
Index("uq_domains_name_tenant", Domain.name, Domain.tenant_id, unique=True)
Index("uq_domains_verified_name", Domain.name, unique=True,
      sqlite_where=Domain.status == "verified", postgresql_where=Domain.status == "verified")


class DkimKey(Base):
    """A domain's DKIM key pair. The private key is encrypted with a key derived from the
    appliance's secret, so the store (and its backups) never hold it in the clear.

    Lifecycle: pending (published, not yet seen in DNS) -> active (signs) -> retiring (still
    listed during the grace period after a rotation) -> retired.

    algorithm: rsa (RSA-2048, p= a SubjectPublicKeyInfo) or ed25519 (RFC 8463, p= the raw 32-byte
    public key). A domain signs with its active key of each algorithm (issue 26).
    """

    __tablename__ = "dkim_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    selector: Mapped[str] = mapped_column(String(63))
    public_key: Mapped[str] = mapped_column(Text)  # base64, as in p= (see algorithm)
    algorithm: Mapped[str] = mapped_column(String(16), default="rsa", server_default="rsa")
    private_key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retire_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("uq_dkim_keys_domain_selector", DkimKey.domain_id, DkimKey.selector, unique=True)


class Inbox(Base):
    __tablename__ = "inboxes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"), index=True)
    address: Mapped[str] = mapped_column(String(320), index=True)  # lower case; unique while live
    display_name: Mapped[str] = mapped_column(String(200), default="")
    default_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|paused|deleted
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # only keys set; defaults in services/identity/settings.py


class Thread(Base):
    """A conversation in one inbox: messages joined by In-Reply-To/References."""

    __tablename__ = "threads"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(Text, default="")
    message_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_message_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_threads_inbox_last", Thread.inbox_id, Thread.last_message_at)


class Message(Base):
    """One message in one inbox, inbound or outbound. Its raw bytes live in message_raw."""

    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(String(40), index=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound|outbound
    status: Mapped[str] = mapped_column(String(24), default="received")
    subject: Mapped[str] = mapped_column(Text, default="")
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Parsed fields (the raw message stays authoritative).
    message_id_header: Mapped[str] = mapped_column(String(998), default="", index=True)
    in_reply_to: Mapped[str] = mapped_column(String(998), default="")
    references: Mapped[list] = mapped_column(JSON, default=list)
    date_header: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[list] = mapped_column(JSON, default=list)  # [{"email", "name"}]
    cc_addrs: Mapped[list] = mapped_column(JSON, default=list)
    reply_to_addrs: Mapped[list] = mapped_column(JSON, default=list)
    snippet: Mapped[str] = mapped_column(Text, default="")
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")  # sanitised for display
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(default=0)
    labels: Mapped[list] = mapped_column(JSON, default=list)
    authentication: Mapped[dict] = mapped_column(JSON, default=dict)
    parse_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    envelope_to: Mapped[str] = mapped_column(String(320), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Auto-Submitted/Precedence/List-Id mail (mime.is_automated); None: stored before it was kept.
    automated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # Issue 21: {phishing: {verdict, score, reasons}, next_step: {...}}; None until the worker enriched it.
    enrichment: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class MessageRaw(Base):
    """The message exactly as received or sent (RFC 5322 bytes), kept apart from the hot table."""

    __tablename__ = "message_raw"
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    """A decoded attachment or inline part of a message."""

    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column()
    disposition: Mapped[str] = mapped_column(String(16), default="attachment")  # attachment|inline
    content_id: Mapped[str] = mapped_column(String(998), default="")
    # The decoded bytes: in the blob store when blob_id is set (issue 19: new mail, and old rows
    # once the worker's backfill moved them; content is then empty), else still in content.
    content: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    blob_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


# The rows the backfill has still to move (only they are in it: empty once the move is done).
Index("ix_attachments_unmoved", Attachment.id, sqlite_where=Attachment.blob_id.is_(None),
      postgresql_where=Attachment.blob_id.is_(None))


class MessageSearch(Base):
    """The search document of a message (PostgreSQL: a tsvector behind a GIN index). On SQLite the
    table also has `search_rowid INTEGER PRIMARY KEY` (migration 0008; not mapped, SQLite assigns
    it), the rowid of the FTS5 index messages_fts, which triggers on this table keep in step."""

    __tablename__ = "message_search"
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(40), index=True)
    document: Mapped[str] = mapped_column(Text, default="")


# An address belongs to one live inbox; a deleted inbox's address may be taken again.
Index("uq_inboxes_live_address", Inbox.address, unique=True,
      sqlite_where=Inbox.status != "deleted", postgresql_where=Inbox.status != "deleted")
Index("ix_messages_inbox_created", Message.inbox_id, Message.created_at)
Index("ix_messages_inbox_id", Message.inbox_id, Message.id)
Index("ix_messages_inbox_from", Message.inbox_id, Message.from_email, Message.created_at)  # contacts' relationship
# GET /v1/users/me/'s next step: has the inbox sent anything, read anything (one probe each; 0043)
Index("ix_messages_inbox_sent", Message.inbox_id,
      sqlite_where=Message.direction == "outbound", postgresql_where=Message.direction == "outbound")
Index("ix_messages_inbox_read", Message.inbox_id,
      sqlite_where=(Message.direction == "inbound") & Message.is_read,
      postgresql_where=(Message.direction == "inbound") & Message.is_read)


class SystemMail(Base):
    """Mail the appliance itself sends (sign-up links, notices), waiting for the delivery worker."""

    __tablename__ = "system_mail"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # signup_link, ...
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(String(320), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|sent|failed
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
