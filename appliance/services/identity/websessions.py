"""Web UI sign-ins: server-side sessions (user_sessions, kind "web"), revocable at once.

The browser holds only a random secret (inside the signed session cookie); the store holds its
digest, so any web worker resolves it and a sign-out or password change ends it everywhere.
A sign-in that still owes a TOTP code is a session of kind "web-2fa" that lasts five minutes
and grants nothing until the code upgrades it (with a fresh secret).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import UnauthorizedError
from appliance.models import User, UserSession
from appliance.security import digest, new_secret
from appliance.services.identity import accounts, totp
from appliance.services.identity.auth import Principal

WEB_SECRET_PREFIX = "gsw_"  # never a bearer token: the API only takes gent_ and gsa_ secrets
WEB = "web"
PENDING_SECOND_FACTOR = "web-2fa"
SECOND_FACTOR_WINDOW = 300


def _rekey(session: UserSession, kind: str, lifetime: int) -> str:
    """Give the session a new secret (and an unusable refresh hash); return the raw secret."""
    raw = new_secret(WEB_SECRET_PREFIX)
    session.access_hash = digest(raw)
    session.refresh_hash = digest(new_secret(WEB_SECRET_PREFIX))
    session.kind = kind
    expires = utcnow() + dt.timedelta(seconds=lifetime)
    session.access_expires_at = session.refresh_expires_at = expires
    return raw


def sign_in(db: Session, counters: Session, settings: Settings, email: str, password: str,
            client_ip: str) -> tuple[str, bool]:
    """Check the password (throttled exactly like POST /auth/login/) and start a web session.

    Returns (raw secret, needs_second_factor). The API tokens log_in issued are discarded
    unseen: the row's hashes are replaced by the web secret's.
    """
    issued = accounts.log_in(db, counters, settings, email, password, client_ip)
    if totp.is_enabled(db, issued.session.user_id):
        return _rekey(issued.session, PENDING_SECOND_FACTOR, SECOND_FACTOR_WINDOW), True
    return _rekey(issued.session, WEB, settings.web_session_ttl), False


def complete_second_factor(db: Session, counters: Session, settings: Settings, pending_raw: str,
                           code: str) -> str:
    """Check the TOTP code of a pending sign-in; on success the session is live, with a new secret."""
    session = _find(db, pending_raw, PENDING_SECOND_FACTOR)
    if session is None:
        raise UnauthorizedError("The sign-in has expired; enter your password again.")
    totp.check_code(db, counters, settings, session.user_id, code)
    return _rekey(session, WEB, settings.web_session_ttl)


def _find(db: Session, raw: str, kind: str) -> UserSession | None:
    if not raw or not raw.startswith(WEB_SECRET_PREFIX):
        return None
    session = db.scalar(select(UserSession).where(UserSession.access_hash == digest(raw)))
    if session is None or session.kind != kind or session.revoked_at is not None:
        return None
    if session.access_expires_at <= utcnow():
        return None
    return session


def resolve(db: Session, raw: str) -> Principal | None:
    """The signed-in user of a live web session, or None (unknown, ended, expired, disabled)."""
    session = _find(db, raw, WEB)
    if session is None:
        return None
    user = db.get(User, session.user_id)
    if user is None or user.status != "active":
        return None
    return Principal(kind="user", tenant_id=user.tenant_id, user=user, session=session)


def sign_out(db: Session, raw: str) -> None:
    """End the web session (pending or live) at once; unknown secrets are ignored."""
    if raw and raw.startswith(WEB_SECRET_PREFIX):
        db.execute(update(UserSession).where(UserSession.access_hash == digest(raw),
                                             UserSession.revoked_at.is_(None))
                   .values(revoked_at=utcnow()))
