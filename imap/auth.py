"""Who logs in over IMAP: the one mail-client sign-in of the app passwords (issue 25 point 2).

An inbox address and an app password of that inbox (or, for an account without a second factor,
the owner's password; or the inbox's own agent token) open that inbox; failures are throttled per
IP and per account by the same counters as every other sign-in (identity/app_passwords.py).
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.errors import UnauthorizedError
from appliance.services.identity import app_passwords
from appliance.services.identity.app_passwords import MailLogin

Login = MailLogin


def authenticate(db: Session, counters: Session, settings: Settings, username: str, password: str,
                 client_ip: str) -> MailLogin:
    """The inbox and the principal these credentials open (the throttles' counts committed either
    way); UnauthorizedError for a paused inbox too, which takes no mail-client sessions."""
    try:
        login = app_passwords.authenticate(db, counters, settings, username, password, client_ip)
    finally:
        counters.commit()
    if login.inbox.status != "active":
        raise UnauthorizedError("The address or password is incorrect.")
    if not login.principal.has_scope("email:read"):
        raise UnauthorizedError("This agent token has no email:read scope.")
    return login


def may_write(login: MailLogin) -> bool:
    """People change their mail from a client; an agent token only with email:write."""
    return login.principal.has_scope("email:write")
