"""Accounts: sign-up, operators, login, refresh, logout and password changes."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import (ConflictError, RateLimitedError, UnauthorizedError, ValidationError)
from appliance.ids import new_id
from appliance.models import Tenant, User, UserSession
from appliance.security import (ACCESS_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, digest, hash_password,
                                is_common_password, needs_rehash, new_secret, verify_password)
from appliance.services import ratelimit
from appliance.services.automation import events
from appliance.services.identity import waitlist
from appliance.services.validation import normalize_email, reject_control_chars

LOGIN_WINDOW = 15 * 60


@dataclass(frozen=True)
class IssuedSession:
    session: UserSession
    access_token: str
    refresh_token: str
    expires_in: int


def check_password_strength(password: str, email: str = "", field: str = "password") -> None:
    if not 8 <= len(password) <= 128:
        raise ValidationError(f"{field} must be 8 to 128 characters", field=field, code="weak_password",
                              fix="Choose a longer passphrase, for example four random words.")
    if is_common_password(password) or (email and password.lower() == email.split("@")[0].lower()):
        raise ValidationError(f"{field} is too common", field=field, code="weak_password",
                              fix="Choose a password that is not on lists of common passwords.")


def _create_user(db: Session, email: str, password: str, name: str, *, role: str,
                 tenant_id: str | None = None, is_operator: bool = False) -> User:
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise ConflictError("An account with this address already exists.", field="email")
    now = utcnow()
    if tenant_id is None:
        tenant = Tenant(id=new_id("tnt"), name=name or email.split("@", 1)[1], created_at=now)
        db.add(tenant)
        tenant_id = tenant.id
    user = User(id=new_id("usr"), tenant_id=tenant_id, email=email, name=name,
                password_hash=hash_password(password), role=role, is_operator=is_operator,
                status="active", created_at=now)
    db.add(user)
    db.flush()
    return user


def sign_up(db: Session, email: str, signup_token: str, password: str, name: str = "") -> User:
    """Redeem a sign-up link: a new tenant with this user as its owner."""
    email = normalize_email(email)
    reject_control_chars(name, "name")
    check_password_strength(password, email)
    entry, token = waitlist.check_signup_token(db, email, signup_token)
    waitlist.redeem(db, entry, token)
    user = _create_user(db, email, password, name.strip(), role="owner")
    events.emit(db, "user.signed_up", tenant_id=user.tenant_id, resource_id=user.id, actor=user.id)
    return user


def create_operator(db: Session, email: str, password: str, name: str = "") -> User:
    """An appliance operator, who also owns a tenant of their own (the one-team box)."""
    email = normalize_email(email)
    check_password_strength(password, email)
    return _create_user(db, email, password, name, role="owner", is_operator=True)


def _issue(db: Session, settings: Settings, user: User, client_ip: str, kind: str = "api") -> IssuedSession:
    now = utcnow()
    access, refresh = new_secret(ACCESS_TOKEN_PREFIX), new_secret(REFRESH_TOKEN_PREFIX)
    session = UserSession(
        id=new_id("ses"), user_id=user.id, access_hash=digest(access), refresh_hash=digest(refresh),
        access_expires_at=now + dt.timedelta(seconds=settings.access_token_ttl),
        refresh_expires_at=now + dt.timedelta(seconds=settings.refresh_token_ttl),
        created_at=now, client_ip=client_ip[:64], kind=kind)
    db.add(session)
    return IssuedSession(session, access, refresh, settings.access_token_ttl)


def log_in(db: Session, counters: Session, settings: Settings, email: str, password: str,
           client_ip: str) -> IssuedSession:
    """Check credentials, throttled per IP and per account; wrong email or password look alike."""
    try:
        address = normalize_email(email)
    except ValidationError:
        address = None
    # Count per account under the normalized address, so spelling one address several ways
    # (case, IDN in Unicode or punycode) does not multiply the allowed guesses.
    ip_key = f"loginfail:ip:{client_ip}"
    acct_key = f"loginfail:acct:{address or email.strip().lower()}"
    if (ratelimit.count(counters, ip_key, LOGIN_WINDOW) >= settings.login_failures_ip
            or ratelimit.count(counters, acct_key, LOGIN_WINDOW) >= settings.login_failures_account):
        raise RateLimitedError(ratelimit.window_reset(LOGIN_WINDOW),
                               "Too many failed logins; wait before trying again.")
    user = db.scalar(select(User).where(User.email == address)) if address else None
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or user.status != "active":
        ratelimit.hit(counters, ip_key, 10**9, LOGIN_WINDOW)
        ratelimit.hit(counters, acct_key, 10**9, LOGIN_WINDOW)
        raise UnauthorizedError("The email or password is incorrect.",
                                fix="Check both; after repeated failures logins are paused for a while.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _issue(db, settings, user, client_ip)


def log_in_api(db: Session, counters: Session, settings: Settings, email: str, password: str,
               client_ip: str, otp: str | None) -> IssuedSession:
    """POST /auth/login/: the password, then, for an account with a second factor, its current
    TOTP code (`otp`). Without the code no session is issued: enabling TOTP in the web UI must
    protect the API as well, or it protects nothing."""
    from appliance.services.identity import totp  # totp sits above accounts (it emits events on users)

    issued = log_in(db, counters, settings, email, password, client_ip)
    if not totp.is_enabled(db, issued.session.user_id):
        return issued
    if not otp:
        raise UnauthorizedError("This account signs in with a second factor: the password alone is not enough.",
                                code="otp_required",
                                fix="Send the 6-digit code of your authenticator app in the otp field.")
    try:
        totp.check_code(db, counters, settings, issued.session.user_id, otp)
    except ValidationError as exc:
        raise UnauthorizedError("The second-factor code is not correct.", code="otp_invalid", field="otp",
                                fix=exc.fix) from None
    return issued


def refresh(db: Session, settings: Settings, refresh_token: str) -> IssuedSession:
    """A new access token for a live session (the old access token stops working)."""
    session = db.scalar(select(UserSession).where(UserSession.refresh_hash == digest(refresh_token)))
    now = utcnow()
    if session is None or session.revoked_at is not None:
        raise UnauthorizedError("The refresh token is not valid.", code="token_revoked",
                                fix="Log in again at POST /auth/login/.")
    if session.refresh_expires_at <= now:
        raise UnauthorizedError("The refresh token has expired.", code="token_expired",
                                fix="Log in again at POST /auth/login/.")
    user = db.get(User, session.user_id)
    if user is None or user.status != "active":
        raise UnauthorizedError("The account is disabled.", code="token_revoked")
    access = new_secret(ACCESS_TOKEN_PREFIX)
    session.access_hash = digest(access)
    session.access_expires_at = now + dt.timedelta(seconds=settings.access_token_ttl)
    return IssuedSession(session, access, refresh_token, settings.access_token_ttl)


def log_out(db: Session, session: UserSession) -> None:
    db.execute(update(UserSession).where(UserSession.id == session.id).values(revoked_at=utcnow()))


def change_password(db: Session, user: User, session: UserSession | None, current: str, new: str) -> None:
    """Set a new password and end every other session of the user at once."""
    if not verify_password(user.password_hash, current):
        raise ValidationError("current_password is not correct", field="current_password")
    check_password_strength(new, user.email, field="new_password")
    now = utcnow()
    db.execute(update(User).where(User.id == user.id)
               .values(password_hash=hash_password(new), password_changed_at=now))
    query = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if session is not None:
        query = query.where(UserSession.id != session.id)
    db.execute(query.values(revoked_at=now))
