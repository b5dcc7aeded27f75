"""Who is signed in, and the access decorators every web UI view carries.

Sign-ins are server-side sessions (appliance/services/identity/websessions.py): the signed cookie holds a
random secret whose digest is a user_sessions row, so sign-out and password changes end a session
at once in every worker. Flask-Login keeps the secret as its user id.
"""
from __future__ import annotations

import functools
from typing import Callable
from urllib.parse import urlencode, urlsplit

from flask import g, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from appliance.errors import ForbiddenError
from appliance.services.identity import websessions
from appliance.services.identity.auth import Principal
from webui.store import reading

login_manager = LoginManager()
login_manager.session_protection = None  # the store decides whether a session lives
ACCESS_ATTR = "webui_access"  # public | user | manager | operator, read by the route walk in tests
_PENDING = "webui_pending_2fa"


class WebUser(UserMixin):
    """Flask-Login's user: the session secret and the principal it resolved to."""

    def __init__(self, secret: str, principal: Principal | None) -> None:
        self.secret = secret
        self.principal = principal

    def get_id(self) -> str:
        return self.secret


@login_manager.user_loader
def _load(secret: str) -> WebUser | None:
    with reading() as db:
        principal = websessions.resolve(db, secret)
    return WebUser(secret, principal) if principal is not None else None


def current_principal() -> Principal | None:
    """The signed-in user as the services' Principal, or None."""
    if "webui_principal" not in g:
        user = current_user
        g.webui_principal = user.principal if user is not None and user.is_authenticated else None
    return g.webui_principal


def start_session(secret: str) -> None:
    """Sign the browser in: a fresh cookie (its content changes) that lasts web_session_ttl."""
    session.clear()
    session.permanent = True
    login_user(WebUser(secret, None))
    g.pop("webui_principal", None)


def end_session() -> str | None:
    """Forget the browser's sign-in; returns the secret so the caller can revoke it in the store."""
    secret = session.get("_user_id") or session.get(_PENDING)
    logout_user()
    session.clear()
    g.pop("webui_principal", None)
    return secret


def set_pending_second_factor(secret: str) -> None:
    session.clear()
    session[_PENDING] = secret


def pending_second_factor() -> str | None:
    return session.get(_PENDING)


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: never an open redirect to another host. Browsers drop tabs and line
    breaks from URLs and read a backslash as a slash, so "/<tab>/evil.example" would leave the site."""
    if not target or not target.startswith("/") or any(c in target for c in "\\\t\r\n"):
        return None
    if target.startswith("//") or urlsplit(target).netloc or any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return None
    return target


def _mark(view: Callable, access: str) -> Callable:
    setattr(view, ACCESS_ATTR, access)
    return view


def public_page(view: Callable) -> Callable:
    """A page anyone may open (sign-in, sign-up, the waitlist form)."""
    return _mark(view, "public")


def _guard(access: str, check: Callable[[Principal], None] | None) -> Callable[[Callable], Callable]:
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            principal = current_principal()
            if principal is None:
                here = request.full_path if request.query_string else request.path
                return redirect(url_for("webui.login") + "?" + urlencode({"next": here}))
            if check is not None:
                check(principal)
            return view(*args, **kwargs)
        return _mark(wrapper, access)
    return decorate


def _manager(principal: Principal) -> None:
    if principal.user.role not in ("owner", "admin"):
        raise ForbiddenError("Only the tenant's owner or an admin may open this page.")


def _operator(principal: Principal) -> None:
    if not principal.user.is_operator:
        raise ForbiddenError("Only an appliance operator may open this page.")


login_required_page = _guard("user", None)
login_required_page.__doc__ = "Any signed-in user; others are sent to the sign-in page."
manager_required = _guard("manager", _manager)
operator_required = _guard("operator", _operator)
