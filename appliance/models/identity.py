"""Tenants, users, sessions, agent tokens and the waitlist."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

ROLES = ("owner", "admin", "member")
# Who manages a tenant: its domains, inboxes, tokens, members, approvals. The one definition that
# the services, the web UI's access checks and its navigation all use.
MANAGER_ROLES = ("owner", "admin")


class Tenant(Base):
    """One team (account). Everything below a tenant is invisible to every other tenant."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # only keys set; defaults in services/identity/settings.py
    # Bumped by database triggers whenever one of its agent tokens changes (migration 0042): the
    # API processes' token caches compare it on every call (services/identity/auth.py).
    token_generation: Mapped[int] = mapped_column(default=0, server_default="0")


class User(Base):
    """A person who signs in. `is_operator` marks appliance operators (box-wide admin)."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), default="member")
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def _own_id(context) -> str:  # noqa: ANN001
    """A session row that starts a sign-in is its own family."""
    return context.get_current_parameters()["id"]


class UserSession(Base):
    """A sign-in: hashed access and refresh tokens, revocable at once.

    A refresh writes a new row of the same family and marks the old one rotated; presenting a
    rotated refresh token again revokes the whole family (migration 0013).
    """

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)
    access_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    refresh_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16), default="api")  # api | web
    family_id: Mapped[str] = mapped_column(String(40), index=True, default=_own_id)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AgentToken(Base):
    """A `gent_` bearer token bound to one inbox, with scopes. Only its SHA-256 is stored."""

    __tablename__ = "agent_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    requires_approval: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|paused|revoked
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    seen_ips: Mapped[list | None] = mapped_column(JSON, nullable=True)  # the audit log notes each new one


class WaitlistEntry(Base):
    """A request for access, decided by an operator."""

    __tablename__ = "waitlist_entries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|approved|rejected|redeemed
    request_count: Mapped[int] = mapped_column(default=1)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")


class SignupToken(Base):
    """A single-use, expiring sign-up link for an approved waitlist entry (hash only)."""

    __tablename__ = "signup_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    waitlist_entry_id: Mapped[str] = mapped_column(
        ForeignKey("waitlist_entries.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    invalidated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_agent_tokens_inbox_status", AgentToken.inbox_id, AgentToken.status)
