"""App passwords (contract section 20): what a person's mail client signs in with over IMAP and
SMTP submission. Each is bound to one user and one inbox the user may use, shown once, stored
as a digest, revocable, and audited by the edges' commit points like any other change.

A mail client signs in with the inbox's address as its user name and either one of that inbox's
app passwords or, for an account without a second factor, the tenant owner's own password (an
account with TOTP must use app passwords: a password alone would bypass its second factor). An
agent whose framework speaks only SMTP or IMAP signs in with its own agent token as the password:
it then acts as that token, with its scopes, caps and held actions, exactly as over the API.
Failures are throttled with the same per-IP and per-account counters as the web and API sign-in;
an app password or token (264 random bits) is limited per IP only, so a mail client's parallel
connections (Thunderbird opens several) never wait on each other's turn.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ForbiddenError, UnauthorizedError, ValidationError
from appliance.ids import new_id
from appliance.models import AppPassword, Inbox, InboxMember, MANAGER_ROLES, User
from appliance.security import AGENT_TOKEN_PREFIX, digest, new_secret, verify_password
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.identity import accounts, auth, totp
from appliance.services.identity.auth import Principal, usable_inbox
from appliance.services.validation import reject_control_chars

APP_PASSWORD_PREFIX = "gapp_"
PER_USER = 50  # live app passwords one person may hold


@dataclass(frozen=True)
class IssuedAppPassword:
    row: AppPassword
    raw: str  # shown once, in the answer that made it


@dataclass(frozen=True)
class MailLogin:
    """A mail client signed in: who acts (a person, or an agent token), in which inbox, and how."""
    principal: Principal
    inbox: Inbox
    via: str  # "app_password" | "password" (the owner's own) | "token" (an agent token)
    credential_id: str | None  # the app password's or token's id


def _person(principal: Principal) -> User:
    if principal.kind != "user":
        raise ForbiddenError("App passwords belong to people: sign in with your own session.",
                             fix="Call POST /v1/app-passwords/ with a session token from POST /auth/login/.")
    return principal.user


def create(db: Session, principal: Principal, *, inbox_id: str, label: str) -> IssuedAppPassword:
    """A new app password for one of the inboxes the caller may use; the secret is returned once."""
    user = _person(principal)
    inbox = usable_inbox(db, principal, inbox_id, field="inbox_id")
    reject_control_chars(label, "label")
    live = len(list(db.scalars(select(AppPassword.id).where(AppPassword.user_id == user.id,
                                                             AppPassword.revoked_at.is_(None)))))
    if live >= PER_USER:
        raise ValidationError(f"You already hold {PER_USER} app passwords.", field="label",
                              fix="Revoke the ones no client uses (DELETE /v1/app-passwords/{id}/).")
    raw = new_secret(APP_PASSWORD_PREFIX)
    row = AppPassword(id=new_id("app"), tenant_id=inbox.tenant_id, user_id=user.id, inbox_id=inbox.id,
                      label=label.strip(), secret_hash=digest(raw), created_at=utcnow())
    db.add(row)
    events.emit(db, "app_password.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=row.id,
                actor=principal.id, payload={"label": row.label})
    return IssuedAppPassword(row, raw)


def list_own(db: Session, principal: Principal, *, after: str | None, limit: int) -> list[AppPassword]:
    """The caller's live app passwords (never their secrets)."""
    user = _person(principal)
    query = tenancy.owned(select(AppPassword), AppPassword, principal.tenant_id).where(
        AppPassword.user_id == user.id, AppPassword.revoked_at.is_(None))
    if after:
        query = query.where(AppPassword.id > after)
    return list(db.scalars(query.order_by(AppPassword.id).limit(limit)))


def revoke(db: Session, principal: Principal, app_password_id: str) -> None:
    """Revoke one of the caller's app passwords: the next sign-in with it fails."""
    user = _person(principal)
    row = tenancy.get_owned(db, AppPassword, app_password_id, principal.tenant_id,
                            where=(AppPassword.user_id == user.id, AppPassword.revoked_at.is_(None)),
                            message="No such app password.")
    row.revoked_at = utcnow()
    events.emit(db, "app_password.revoked", tenant_id=row.tenant_id, inbox_id=row.inbox_id, resource_id=row.id,
                actor=principal.id)


def to_dict(row: AppPassword, raw: str | None = None) -> dict:
    body = {"app_password_id": row.id, "inbox_id": row.inbox_id, "label": row.label,
            "created_at": events.iso(row.created_at), "last_used_at": events.iso(row.last_used_at)}
    if raw is not None:
        body["password"] = raw
    return body


# --- signing in from a mail client ------------------------------------------------------------
def _may_use(db: Session, user: User, inbox: Inbox) -> bool:
    if user.status != "active" or user.tenant_id != inbox.tenant_id:
        return False
    if user.role in MANAGER_ROLES:
        return True
    return db.scalar(select(InboxMember.inbox_id).where(InboxMember.inbox_id == inbox.id,
                                                        InboxMember.user_id == user.id)) is not None


def _by_app_password(db: Session, inbox: Inbox, password: str) -> MailLogin | None:
    row = db.scalar(select(AppPassword).where(AppPassword.secret_hash == digest(password),
                                              AppPassword.inbox_id == inbox.id, AppPassword.revoked_at.is_(None)))
    user = db.get(User, row.user_id) if row is not None else None
    if row is None or user is None or not _may_use(db, user, inbox):
        return None
    db.execute(update(AppPassword).where(AppPassword.id == row.id).values(last_used_at=utcnow()))
    return MailLogin(_person_in(user), inbox, "app_password", row.id)


def _person_in(user: User) -> Principal:
    """The person acting from a mail client (no web or API session behind it)."""
    return Principal(kind="user", tenant_id=user.tenant_id, user=user)


def _by_agent_token(db: Session, inbox: Inbox, password: str) -> MailLogin | None:
    try:
        principal = auth.authenticate(db, password)
    except (UnauthorizedError, ForbiddenError):
        return None
    if principal.own_inbox_id != inbox.id:
        return None
    auth.record_token_use(db, principal)
    return MailLogin(principal, inbox, "token", principal.token.id)


def _by_owner_password(db: Session, inbox: Inbox, password: str) -> MailLogin | None:
    owners = db.scalars(select(User).where(User.tenant_id == inbox.tenant_id, User.role == "owner",
                                           User.status == "active").order_by(User.id).limit(3))
    for owner in owners:
        if verify_password(owner.password_hash, password) and not totp.is_enabled(db, owner.id):
            return MailLogin(_person_in(owner), inbox, "password", None)
    return None


def authenticate(db: Session, counters: Session, settings: Settings, username: str, password: str,
                 client_ip: str) -> MailLogin:
    """A mail client's credentials → who acts in which inbox; 401 otherwise (wrong address and
    wrong password look alike), throttled per IP and per account before any hash is checked."""
    address = (username or "").strip().lower()
    now = utcnow().timestamp()
    secret = password.startswith((APP_PASSWORD_PREFIX, AGENT_TOKEN_PREFIX))
    if secret:  # 264 random bits cannot be guessed: the per-IP limit is enough, and a mail client's
        accounts.guard_ip(counters, settings, client_ip, now)  # parallel connections never wait
    else:
        accounts.guard_sign_in(counters, settings, f"mail:{address}", client_ip, now)
    inbox = db.scalar(select(Inbox).where(Inbox.address == address, Inbox.status != "deleted")) if address else None
    login = None
    if inbox is not None and password:
        login = (_by_app_password(db, inbox, password) if password.startswith(APP_PASSWORD_PREFIX)
                 else _by_agent_token(db, inbox, password) if password.startswith(AGENT_TOKEN_PREFIX)
                 else _by_owner_password(db, inbox, password))
    if login is None:
        if not secret:
            verify_password(None, password)  # the same cost whether or not the address exists
        accounts.count_failed_sign_in(counters, client_ip, now)
        raise UnauthorizedError("The address or password is incorrect.",
                                fix="Sign in with the inbox's address and an app password (POST /v1/app-passwords/).")
    if not secret:
        accounts.clear_sign_in_failures(counters, f"mail:{address}")
    return login
