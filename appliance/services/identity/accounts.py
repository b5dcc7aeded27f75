"""Accounts: sign-up, operators, login, refresh, logout and password changes."""
from __future__ import annotations

import datetime as dt
import logging
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
from appliance.services.governance import audit
from appliance.services.identity import waitlist
from appliance.services.validation import normalize_email, reject_control_chars

LOGIN_WINDOW = 15 * 60
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedSession:
    session: UserSession
    access_token: str
    refresh_token: str
    expires_in: int


def check_password_strength(password: str, email: str = "", field: str = "password") -> None:
    """8 to 128 characters, not on the shipped common-password list, not the address's local part."""
    if not 8 <= len(password) <= 128:
        raise ValidationError(f"{field} must be 8 to 128 characters", field=field, code="weak_password",
                              fix="Choose a longer passphrase, for example four random words.")
    if is_common_password(password) or (email and password.lower() == email.split("@")[0].lower()):
        raise ValidationError(f"{field} is too common", field=field, code="weak_password",
                              fix="This password is on the list of 30,000 common passwords that attackers "
                                  "try first (or is your address's name): choose another, for example four "
                                  "random words.")


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
    audit.refine(actor=audit.Actor("user", user.id, user.email), tenant_id=user.tenant_id, resource_type="users",
                 resource_id=user.id)
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


def _account_key(address: str) -> str:
    return f"logindelay:acct:{address}"


def _ip_key(client_ip: str) -> str:
    return f"loginfail:ip:{ratelimit.address_key(client_ip)}"


def guard_ip(counters: Session, settings: Settings, client_ip: str, now: float) -> None:
    """The client's address (IPv6 per /64) must be under its limit of failed sign-ins."""
    if ratelimit.count(counters, _ip_key(client_ip), LOGIN_WINDOW, now=now) >= settings.login_failures_ip:
        raise RateLimitedError(ratelimit.window_reset(LOGIN_WINDOW, now=now),
                               "Too many failed logins from this address; wait before trying again.")


def guard_sign_in(counters: Session, settings: Settings, address: str, client_ip: str, now: float) -> None:
    """Before any password hash is checked: the client's address (IPv6 per /64) must be under its
    limit and the account past its delay; the attempt is then counted as a failure until it succeeds."""
    guard_ip(counters, settings, client_ip, now)
    backoff = ratelimit.Backoff(settings.login_failures_account, settings.login_delay_base, settings.login_delay_max)
    ratelimit.claim_attempt(counters, _account_key(address), backoff, now=now,
                            message="Too many failed logins for this account; wait before trying again.")


def clear_sign_in_failures(counters: Session, address: str) -> None:
    """A sign-in succeeded: the account's delay starts again from nothing (committed at once)."""
    ratelimit.clear_attempts(counters, _account_key(address))
    counters.commit()


def count_failed_sign_in(counters: Session, client_ip: str, now: float) -> None:
    """A failed sign-in counts against the client's address, committed at once.

    Never hold a counter's write lock while the request goes on: the next step (the audit entry of
    the refusal, a new session) writes the main store, and on SQLite a request holding the main
    store's lock may be waiting for this counter, so each would wait for the other until
    busy_timeout ran out (seen as 503s when a dozen guesses came at once)."""
    ratelimit.hit(counters, _ip_key(client_ip), 10**9, LOGIN_WINDOW, now=now)
    counters.commit()


def log_in(db: Session, counters: Session, settings: Settings, email: str, password: str,
           client_ip: str) -> IssuedSession:
    """Check credentials, throttled per IP and per account; wrong email or password look alike.

    No account is ever locked: after `login_failures_account` failures each try must wait a delay
    that doubles with every failure (at most `login_delay_max`), so the owner gets in between."""
    try:
        address = normalize_email(email)
    except ValidationError:
        address = None
    # Count per account under the normalized address, so spelling one address several ways
    # (case, IDN in Unicode or punycode) does not multiply the allowed guesses.
    account = address or email.strip().lower()
    now = utcnow().timestamp()
    guard_sign_in(counters, settings, account, client_ip, now)
    user = db.scalar(select(User).where(User.email == address)) if address else None
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or user.status != "active":
        count_failed_sign_in(counters, client_ip, now)
        raise UnauthorizedError("The email or password is incorrect.",
                                fix="Check both; after repeated failures each new try must wait a while.")
    clear_sign_in_failures(counters, account)
    audit.refine(actor=audit.Actor("user", user.id, user.email), tenant_id=user.tenant_id, resource_type="users",
                 resource_id=user.id, changes={"email": user.email})
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
    """New access and refresh tokens for a live session; the presented refresh token is used up.

    Presenting a used (rotated) refresh token again means it was copied: every token of that
    sign-in (its family) is revoked at once, the thief's and the owner's alike.
    """
    session = db.scalar(select(UserSession).where(UserSession.refresh_hash == digest(refresh_token)))
    now = utcnow()
    if session is None:
        raise UnauthorizedError("The refresh token is not valid.", code="token_revoked",
                                fix="Log in again at POST /auth/login/.")
    if session.refresh_expires_at <= now:  # the whole family shares the sign-in's expiry
        raise UnauthorizedError("The refresh token has expired.", code="token_expired",
                                fix="Log in again at POST /auth/login/.")
    if session.rotated_at is not None:
        _refuse_reuse(db, session.family_id, now)
    if session.revoked_at is not None:
        raise UnauthorizedError("The refresh token is not valid.", code="token_revoked",
                                fix="Log in again at POST /auth/login/.")
    user = db.get(User, session.user_id)
    if user is None or user.status != "active":
        raise UnauthorizedError("The account is disabled.", code="token_revoked")
    return _rotate(db, settings, session, now)


def _rotate(db: Session, settings: Settings, session: UserSession, now: dt.datetime) -> IssuedSession:
    """Use up the session's tokens and issue their successor in the same family."""
    # Compare-and-set: of two refreshes racing with one token, the second counts as a reuse. The
    # old access token stops working as an unknown one, as it always has after a refresh.
    used = db.execute(update(UserSession).where(UserSession.id == session.id, UserSession.rotated_at.is_(None),
                                                UserSession.revoked_at.is_(None))
                      .values(rotated_at=now, revoked_at=now,
                              access_hash=digest(new_secret(ACCESS_TOKEN_PREFIX)))).rowcount
    if used != 1:
        _refuse_reuse(db, session.family_id, now)
    access, new_refresh = new_secret(ACCESS_TOKEN_PREFIX), new_secret(REFRESH_TOKEN_PREFIX)
    successor = UserSession(
        id=new_id("ses"), user_id=session.user_id, access_hash=digest(access), refresh_hash=digest(new_refresh),
        access_expires_at=now + dt.timedelta(seconds=settings.access_token_ttl),
        refresh_expires_at=session.refresh_expires_at, created_at=now, client_ip=session.client_ip,
        kind=session.kind, family_id=session.family_id)
    db.add(successor)
    return IssuedSession(successor, access, new_refresh, settings.access_token_ttl)


def _refuse_reuse(db: Session, family_id: str, now: dt.datetime) -> None:
    """End every session of one sign-in, committed before the 401 (which rolls the request back)."""
    db.execute(update(UserSession).where(UserSession.family_id == family_id, UserSession.revoked_at.is_(None))
               .values(revoked_at=now))
    db.commit()
    log.warning("a used refresh token was presented again: sign-in family %s revoked", family_id)
    raise UnauthorizedError("The refresh token was already used; every token of this sign-in is now revoked.",
                            code="token_revoked", fix="Log in again at POST /auth/login/.")


def log_out(db: Session, session: UserSession) -> None:
    db.execute(update(UserSession).where(UserSession.id == session.id).values(revoked_at=utcnow()))


def change_password(db: Session, counters: Session, settings: Settings, user: User, session: UserSession | None,
                    current: str, new: str, client_ip: str) -> None:
    """Set a new password and end every other session of the user at once.

    A wrong current password counts like a failed login (the same delays and per-IP limit), so a
    stolen session cannot be used to guess the password at full speed."""
    now_ts = utcnow().timestamp()
    guard_sign_in(counters, settings, user.email, client_ip, now_ts)
    if not verify_password(user.password_hash, current):
        count_failed_sign_in(counters, client_ip, now_ts)
        raise ValidationError("current_password is not correct", field="current_password",
                              fix="Type your current password; after repeated failures each new try must wait a while.")
    clear_sign_in_failures(counters, user.email)
    check_password_strength(new, user.email, field="new_password")
    now = utcnow()
    db.execute(update(User).where(User.id == user.id)
               .values(password_hash=hash_password(new), password_changed_at=now))
    query = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if session is not None:
        query = query.where(UserSession.id != session.id)
    db.execute(query.values(revoked_at=now))
