"""Who is calling: bearer tokens resolved to a principal, and the access rules on inboxes."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ForbiddenError, NotFoundError, UnauthorizedError, ValidationError
from appliance.models import AgentToken, Inbox, User, UserSession
from appliance.security import (ACCESS_TOKEN_PREFIX, AGENT_TOKEN_PREFIX, digest)

SCOPES = (
    "email:read", "email:send", "email:write", "labels:read", "labels:write", "contacts:read",
    "contacts:write", "calendar:read", "calendar:write", "task:read", "task:write", "files:read",
    "files:write", "context:read", "context:write", "alerts:read", "alerts:write",
    "workflows:read", "workflows:write", "sequences:write", "approvals:read", "approvals:write",
    "billing:read", "billing:write", "stats:read", "llm:write",
)
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)  # write last_used_at at most once a minute


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a user session or an agent token."""

    kind: str  # "user" | "agent"
    tenant_id: str
    user: User | None = None
    session: UserSession | None = None
    token: AgentToken | None = None
    needs_touch: bool = False  # the token's last_used_at is due an update

    @property
    def id(self) -> str:
        return self.user.id if self.kind == "user" else self.token.id

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    def has_scope(self, scope: str) -> bool:
        return self.kind == "user" or scope in self.token.scopes


def authenticate(db: Session, raw: str) -> Principal:
    """Resolve a bearer token; 401 unknown/expired/revoked, 403 token_paused."""
    now = utcnow()
    if raw.startswith(AGENT_TOKEN_PREFIX):
        token = db.scalar(select(AgentToken).where(AgentToken.token_hash == digest(raw)))
        if token is None:
            raise UnauthorizedError("The token is not valid.")
        if token.status == "revoked":
            raise UnauthorizedError("The token was revoked.", code="token_revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise UnauthorizedError("The token has expired.", code="token_expired",
                                    fix="Ask the inbox owner for a new token.")
        if token.status == "paused":
            raise ForbiddenError("The token is paused by its owner.", code="token_paused",
                                 fix="Ask the inbox owner to resume the token.")
        stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY
        return Principal(kind="agent", tenant_id=token.tenant_id, token=token, needs_touch=stale)
    if raw.startswith(ACCESS_TOKEN_PREFIX):
        row = db.execute(select(UserSession, User).join(User, User.id == UserSession.user_id)
                         .where(UserSession.access_hash == digest(raw))).first()
        if row is None:
            raise UnauthorizedError("The token is not valid.")
        session, user = row
        if session.revoked_at is not None:
            raise UnauthorizedError("The session was ended.", code="token_revoked",
                                    fix="Log in again at POST /auth/login/.")
        if session.access_expires_at <= now:
            raise UnauthorizedError("The access token has expired.", code="token_expired",
                                    fix="Get a new one at POST /auth/refresh/.")
        if user.status != "active":
            raise UnauthorizedError("The account is disabled.", code="token_revoked")
        return Principal(kind="user", tenant_id=user.tenant_id, user=user, session=session)
    raise UnauthorizedError("The token is not valid.")


def record_token_use(db: Session, principal: Principal) -> None:
    """Set the agent token's last_used_at (callers do it at most once a minute per token)."""
    if principal.is_agent:
        db.execute(update(AgentToken).where(AgentToken.id == principal.token.id).values(last_used_at=utcnow()))


def require_manager(principal: Principal) -> None:
    """Owners and admins manage a tenant's domains, inboxes and tokens; members do not."""
    if principal.kind != "user" or principal.user.role not in ("owner", "admin"):
        raise ForbiddenError("Only the tenant's owner or an admin may do this.")


def inbox_for(db: Session, principal: Principal, inbox_id: str | None) -> Inbox:
    """The inbox a scoped call acts on: the token's own, or the one a manager names.

    Agent tokens never supply another inbox (403 inbox_mismatch); another tenant's inbox, or one
    that does not exist, is 404 (never 403, so ids cannot be probed).
    """
    if principal.is_agent:
        if inbox_id is not None and inbox_id != principal.token.inbox_id:
            raise ForbiddenError("An agent token acts only on its own inbox.", code="inbox_mismatch",
                                 field="inbox_id", fix="Leave inbox_id out: it comes from the token.")
        inbox = db.get(Inbox, principal.token.inbox_id)
        if inbox is None or inbox.status == "deleted":
            raise NotFoundError("The token's inbox no longer exists.")
        return inbox
    if not inbox_id:
        raise ValidationError("inbox_id is required with a session token", field="inbox_id",
                              fix="Pass the inbox_id of one of your inboxes.")
    inbox = db.get(Inbox, inbox_id)
    if inbox is None or inbox.tenant_id != principal.tenant_id or inbox.status == "deleted":
        raise NotFoundError("No such inbox.", field="inbox_id")
    require_manager(principal)
    return inbox
