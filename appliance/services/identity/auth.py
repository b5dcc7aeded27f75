"""Who is calling: bearer tokens resolved to a principal, and the access rules on inboxes."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from sqlalchemy import bindparam, exists, select, text, true, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ForbiddenError, NotFoundError, UnauthorizedError, ValidationError
from appliance.models import MANAGER_ROLES, AgentToken, Inbox, InboxMember, Tenant, User, UserSession
from appliance.security import (ACCESS_TOKEN_PREFIX, AGENT_TOKEN_PREFIX, digest)
from appliance.services import tenancy

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
    """Who acts: a user session, an agent token, the appliance itself, or a workflow.

    `system` and `workflow` principals are made by code (their constructors below), never from a
    bearer token, so later areas act inside a tenant under their own identity, not a faked user:
    - system: the appliance acting on its own inside one tenant (the worker's sweeps, the
      operator's command line naming a tenant's domain or inbox). It has the tenant's manager
      rights over that tenant's rows and every scope, and is never held for approval; it is no
      person, so what only a person may do (change roles, decide held actions) refuses it.
    - workflow: one of the tenant's workflows acting in one inbox with the scopes it was given,
      bound to that inbox like an agent token (its scopes in requires_approval are held); it
      never manages the tenant.
    """

    kind: str  # "user" | "agent" | "system" | "workflow"
    tenant_id: str
    user: User | None = None
    session: UserSession | None = None
    token: AgentToken | None = None
    needs_touch: bool = False  # the token's last_used_at is due an update
    label: str = ""  # system: what acts ("cli", "worker"); workflow: its wfl_ id
    inbox_id: str | None = None  # workflow: the one inbox it acts in
    scopes: tuple[str, ...] = ()  # workflow: what it may do
    held: tuple[str, ...] = ()  # workflow: scopes whose actions wait for a person's approval

    @classmethod
    def system(cls, tenant_id: str, label: str) -> Principal:
        """The appliance acting inside one tenant; label says what acts (e.g. "cli", "worker")."""
        if not tenant_id or not label:
            raise ValueError("a system principal needs a tenant and a label")
        return cls(kind="system", tenant_id=tenant_id, label=label)

    @classmethod
    def workflow(cls, tenant_id: str, workflow_id: str, inbox_id: str, scopes: tuple[str, ...] | list[str],
                 requires_approval: tuple[str, ...] | list[str] = ()) -> Principal:
        """A workflow of the tenant acting in one inbox with the given scopes."""
        unknown = set(scopes) - set(SCOPES)
        if unknown or not tenant_id or not inbox_id:
            raise ValueError(f"a workflow principal needs a tenant, an inbox and known scopes ({unknown})")
        return cls(kind="workflow", tenant_id=tenant_id, label=workflow_id, inbox_id=inbox_id,
                   scopes=tuple(scopes), held=tuple(requires_approval))

    @property
    def id(self) -> str:
        if self.kind == "user":
            return self.user.id
        if self.kind == "agent":
            return self.token.id
        return self.label if self.kind == "workflow" else f"system:{self.label}"

    @property
    def actor(self) -> dict:
        """What events record as the actor: {kind, id}."""
        return {"kind": self.kind, "id": self.id}

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    @property
    def is_manager(self) -> bool:
        """Owners and admins of the tenant, and the appliance itself inside it."""
        return self.kind == "system" or (self.kind == "user" and self.user.role in MANAGER_ROLES)

    @property
    def own_inbox_id(self) -> str | None:
        """The one inbox an agent token or a workflow is bound to; None for the others."""
        if self.kind == "agent":
            return self.token.inbox_id
        return self.inbox_id if self.kind == "workflow" else None

    @property
    def requires_approval(self) -> tuple[str, ...]:
        if self.kind == "agent":
            return tuple(self.token.requires_approval or ())
        return self.held

    def has_scope(self, scope: str) -> bool:
        if self.kind == "agent":
            return scope in self.token.scopes
        return scope in self.scopes if self.kind == "workflow" else True


# Compiled once: the statements of the token lookup, the hottest read of the API.
_GENERATION = text("SELECT token_generation FROM tenants WHERE id = :tenant_id")
_TOKEN_BY_HASH = (select(AgentToken, Tenant.token_generation).join(Tenant, Tenant.id == AgentToken.tenant_id)
                  .where(AgentToken.token_hash == bindparam("token_hash")))


class TokenCache:
    """The agent tokens one process has resolved, keyed by digest, each with the generation of its
    tenant's tokens when it was read.

    A hit costs one read of one small row (tenants.token_generation) instead of loading the token.
    Database triggers (migration 0042) bump that number in the transaction of every change that
    matters to authentication, whichever process or code path made it, so a revoked, paused,
    rotated, narrowed or deleted token is seen on the very next call in every process. Expiry is
    checked on every call against the cached expires_at. The cached tokens are detached copies
    that no session writes back.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: dict[str, tuple[AgentToken, int]] = {}
        self._lock = threading.Lock()

    def lookup(self, db: Session, token_hash: str) -> AgentToken | None:
        """The token with this digest, from the cache while its tenant's generation is unchanged."""
        hit = self._entries.get(token_hash)
        if hit is not None:
            generation = db.connection().execute(_GENERATION, {"tenant_id": hit[0].tenant_id}).scalar()
            if generation == hit[1]:
                return hit[0]
        row = db.execute(_TOKEN_BY_HASH, {"token_hash": token_hash}).first()
        with self._lock:
            if row is None:
                self._entries.pop(token_hash, None)
                return None
            token, generation = row
            db.expunge(token)
            if len(self._entries) >= self.size:
                self._entries.clear()  # simple bound: a busy box refills it in a few calls
            self._entries[token_hash] = (token, generation)
        return token


def authenticate(db: Session, raw: str, cache: TokenCache | None = None) -> Principal:
    """Resolve a bearer token; 401 unknown/expired/revoked, 403 token_paused."""
    now = utcnow()
    if raw.startswith(AGENT_TOKEN_PREFIX):
        if cache is not None:
            token = cache.lookup(db, digest(raw))
        else:
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
        now = utcnow()
        db.execute(update(AgentToken).where(AgentToken.id == principal.token.id).values(last_used_at=now))
        principal.token.last_used_at = now  # a cached (detached) token: not due again for a minute


def require_manager(principal: Principal) -> None:
    """Owners and admins manage a tenant's domains, inboxes and tokens; members do not."""
    if not principal.is_manager:
        raise ForbiddenError("Only the tenant's owner or an admin may do this.")


def may_use_inbox(principal: Principal):  # noqa: ANN201 - a SQL condition on Inbox
    """Which of the tenant's inboxes the caller uses: all for managers, the granted ones for a
    member, its own for an agent token or a workflow (the tenant filter comes from tenancy)."""
    if principal.own_inbox_id is not None:
        return Inbox.id == principal.own_inbox_id
    if principal.is_manager:
        return true()
    return exists().where(InboxMember.inbox_id == Inbox.id, InboxMember.user_id == principal.user.id)


def usable_inbox(db: Session, principal: Principal, inbox_id: str | None, field: str | None = None) -> Inbox:
    """A live inbox of the caller's tenant that the caller may use; 404 for any other (another
    tenant's, a deleted one, or one not granted to a member: never 403, so ids cannot be probed)."""
    return tenancy.get_owned(db, Inbox, inbox_id, principal.tenant_id,
                             where=(Inbox.status != "deleted", may_use_inbox(principal)),
                             message="No such inbox.", field=field)


def inbox_for(db: Session, principal: Principal, inbox_id: str | None) -> Inbox:
    """The inbox a scoped call acts on: the token's (or workflow's) own, or the one a session names.

    Agent tokens never supply another inbox (403 inbox_mismatch). A session names an inbox of its
    tenant that it may use (owners and admins: any; members: the ones granted to them); another
    tenant's, or one that does not exist, is 404 (never 403, so ids cannot be probed).
    """
    own = principal.own_inbox_id
    if own is not None:
        if inbox_id is not None and inbox_id != own:
            raise ForbiddenError("An agent token acts only on its own inbox.", code="inbox_mismatch",
                                 field="inbox_id", fix="Leave inbox_id out: it comes from the token.")
        inbox = tenancy.find_owned(db, Inbox, principal.tenant_id, Inbox.id == own, Inbox.status != "deleted")
        if inbox is None:
            raise NotFoundError("The token's inbox no longer exists.")
        return inbox
    if not inbox_id:
        raise ValidationError("inbox_id is required with a session token", field="inbox_id",
                              fix="Pass the inbox_id of one of your inboxes.")
    return usable_inbox(db, principal, inbox_id, field="inbox_id")
