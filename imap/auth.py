"""Who logs in over IMAP: an inbox address and a password, throttled per IP and per account.

`check_credentials` is the one place that decides; until app passwords land (issue 25 point 2)
it takes the inbox owner's password when the owner has no second factor (an account with TOTP
must use an app password, so a stolen password alone never opens its mail).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import RateLimitedError, UnauthorizedError
from appliance.models import Inbox, User
from appliance.security import verify_password
from appliance.services import ratelimit
from appliance.services.identity import totp
from appliance.services.mail import inbound

WINDOW = 15 * 60


@dataclass(frozen=True)
class Login:
    """The inbox a session works in and the person who logged in."""

    inbox: Inbox
    user: User


def check_credentials(db: Session, username: str, password: str) -> Login:
    """The inbox and user these credentials open, or UnauthorizedError (all failures alike)."""
    address = username.strip().lower()
    inbox = db.scalar(select(Inbox).where(Inbox.address == address, Inbox.status != "deleted"))
    owner = inbound.owner_of(db, inbox.tenant_id) if inbox is not None else None
    ok = verify_password(owner.password_hash if owner else None, password)
    if not ok or owner is None or owner.status != "active" or inbox.status != "active":
        raise UnauthorizedError("The address or password is incorrect.")
    if totp.is_enabled(db, owner.id):
        raise UnauthorizedError("This account has a second factor: log in with an app password.")
    return Login(inbox, owner)


def authenticate(db: Session, counters: Session, settings: Settings, username: str, password: str,
                 client_ip: str) -> Login:
    """check_credentials behind the throttles: failures per IP in a window, and a growing delay
    per account (RateLimitedError while it lasts; no account is ever locked)."""
    now = utcnow().timestamp()
    ip_key = f"imapfail:ip:{ratelimit.address_key(client_ip)}"
    account_key = f"imapdelay:acct:{username.strip().lower()[:320]}"
    if ratelimit.count(counters, ip_key, WINDOW, now=now) >= settings.imap_login_failures_ip:
        raise RateLimitedError(ratelimit.window_reset(WINDOW, now=now), "Too many failed logins from this address.")
    backoff = ratelimit.Backoff(settings.login_failures_account, settings.login_delay_base, settings.login_delay_max)
    # An account with failures on record claims its turn before the check (so guesses cannot race
    # past the delay); one without is checked at once, so a phone and a desktop logging in
    # together never wait on each other.
    failed_before = ratelimit.attempt_failures(counters, account_key, now=now) > 0
    if failed_before:
        ratelimit.claim_attempt(counters, account_key, backoff, now=now, message="Too many failed logins; wait.")
    try:
        login = check_credentials(db, username, password)
    except UnauthorizedError:
        ratelimit.hit(counters, ip_key, 10**9, WINDOW, now=now)
        if not failed_before:
            ratelimit.claim_attempt(counters, account_key, backoff, now=now, message="Too many failed logins.")
        counters.commit()
        raise
    if failed_before:
        ratelimit.clear_attempts(counters, account_key)
    counters.commit()
    return login
