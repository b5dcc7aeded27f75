"""An optional TOTP second factor (RFC 6238, 30 s steps, 6 digits) for web sign-ins."""
from __future__ import annotations

import time

import pyotp
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import RateLimitedError, ValidationError
from appliance.models import User, UserSession, UserTotp
from appliance.security import seal, unseal
from appliance.services import ratelimit
from appliance.services.automation import events

ISSUER = "Gentbox"
FAILURE_WINDOW = 15 * 60
MAX_FAILURES = 10  # wrong codes per user per 15 minutes (a 6-digit code has 10^6 values)
_PURPOSE = "totp"


def _secret(settings: Settings, row: UserTotp) -> str:
    return unseal(settings.secret_key, _PURPOSE, row.secret_sealed, row.user_id).decode()


def is_enabled(db: Session, user_id: str) -> bool:
    row = db.get(UserTotp, user_id)
    return row is not None and row.enabled_at is not None


def begin_enrolment(db: Session, settings: Settings, user: User) -> str:
    """A fresh secret awaiting confirmation (replacing an unconfirmed one); returns its otpauth URI."""
    row = db.get(UserTotp, user.id)
    if row is not None and row.enabled_at is not None:
        raise ValidationError("Two-factor sign-in is already on; turn it off first to enrol again.")
    secret = pyotp.random_base32()
    sealed = seal(settings.secret_key, _PURPOSE, secret.encode(), user.id)
    if row is None:
        db.add(UserTotp(user_id=user.id, secret_sealed=sealed, created_at=utcnow(), label=ISSUER))
    else:
        row.secret_sealed, row.created_at, row.last_step = sealed, utcnow(), None
    return provisioning_uri(secret, user.email)


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def pending_uri(db: Session, settings: Settings, user: User) -> str | None:
    """The otpauth URI of an enrolment awaiting its first code, if there is one."""
    row = db.get(UserTotp, user.id)
    if row is None or row.enabled_at is not None:
        return None
    return provisioning_uri(_secret(settings, row), user.email)


def _accept(db: Session, counters: Session, settings: Settings, row: UserTotp, code: str) -> None:
    key = f"totpfail:{row.user_id}"
    if ratelimit.count(counters, key, FAILURE_WINDOW) >= MAX_FAILURES:
        raise RateLimitedError(ratelimit.window_reset(FAILURE_WINDOW),
                               "Too many wrong codes; wait before trying again.")
    code = "".join(code.split())
    totp = pyotp.TOTP(_secret(settings, row))
    now = time.time()
    # One step either side tolerates clock drift; a step already used is refused (replay).
    for offset in (0, -1, 1):
        step = int(now // 30) + offset
        if (row.last_step is None or step > row.last_step) and code.isdigit() and \
                totp.verify(code, for_time=step * 30):
            # Claim the step with a conditional UPDATE: of concurrent requests carrying the same
            # code exactly one matches (PostgreSQL re-checks the condition after the row lock).
            claimed = db.execute(
                update(UserTotp).where(UserTotp.user_id == row.user_id,
                                       or_(UserTotp.last_step.is_(None), UserTotp.last_step < step))
                .values(last_step=step).execution_options(synchronize_session=False)).rowcount
            db.expire(row, ["last_step"])
            if claimed == 1:
                return
            break
    ratelimit.hit(counters, key, 10**9, FAILURE_WINDOW)
    counters.commit()  # not held while the request goes on (see accounts.count_failed_sign_in)
    raise ValidationError("The code is not correct.", field="code",
                          fix="Enter the 6-digit code your authenticator app shows now.")


def confirm_enrolment(db: Session, counters: Session, settings: Settings, user: User, code: str,
                      keep_session: UserSession | None = None) -> None:
    """Turn the second factor on once a code from the new secret checks out, and end every other
    session of the user (web and API): a session begun with the password alone, perhaps by whoever
    prompted the enrolment, must not outlive it. keep_session (the enrolling one) stays."""
    row = db.get(UserTotp, user.id)
    if row is None or row.enabled_at is not None:
        raise ValidationError("Start the enrolment first.", fix="Open the two-factor page again.")
    _accept(db, counters, settings, row, code)
    row.enabled_at = utcnow()
    others = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if keep_session is not None:
        others = others.where(UserSession.id != keep_session.id)
    db.execute(others.values(revoked_at=row.enabled_at).execution_options(synchronize_session=False))
    events.emit(db, "user.totp_enabled", tenant_id=user.tenant_id, resource_id=user.id, actor=user.id)


def check_code(db: Session, counters: Session, settings: Settings, user_id: str, code: str) -> None:
    """Check a sign-in code for a user with the second factor on."""
    row = db.get(UserTotp, user_id)
    if row is None or row.enabled_at is None:
        raise ValidationError("Two-factor sign-in is not on for this account.")
    _accept(db, counters, settings, row, code)


def disable(db: Session, counters: Session, settings: Settings, user: User, code: str) -> None:
    """Turn the second factor off; a current code is required."""
    check_code(db, counters, settings, user.id, code)
    db.execute(delete(UserTotp).where(UserTotp.user_id == user.id))
    events.emit(db, "user.totp_disabled", tenant_id=user.tenant_id, resource_id=user.id, actor=user.id)
