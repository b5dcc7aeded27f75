"""People and tenants as the web UI manages them: list users, change roles, disable, list tenants.

Operators see every user and tenant of the box; a tenant's owner and admins see their own users.
Another tenant's user is 404, never 403.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ForbiddenError, InvalidRequestError, NotFoundError, ValidationError
from appliance.models import ROLES, Domain, Inbox, Tenant, User, UserSession
from appliance.services.automation import events
from appliance.services.identity.auth import Principal, require_manager


@dataclass(frozen=True)
class TenantSummary:
    tenant: Tenant
    owner_email: str | None
    users: int
    domains: int
    inboxes: int


def _is_operator(principal: Principal) -> bool:
    return principal.kind == "user" and principal.user.is_operator


def require_operator(principal: Principal) -> None:
    """Appliance operators only (the box's waitlist, tenants, health and queue)."""
    if not _is_operator(principal):
        raise ForbiddenError("Only an appliance operator may do this.")


def list_users(db: Session, principal: Principal, *, all_tenants: bool = False) -> list[User]:
    """The caller's tenant's users; every user of the box for an operator who asks."""
    query = select(User).order_by(User.created_at, User.id)
    if all_tenants:
        require_operator(principal)
    else:
        require_manager(principal)
        query = query.where(User.tenant_id == principal.tenant_id)
    return list(db.scalars(query))


def _target(db: Session, principal: Principal, user_id: str) -> User:
    user = db.get(User, user_id)
    if user is None or (user.tenant_id != principal.tenant_id and not _is_operator(principal)):
        raise NotFoundError("No such user.")
    if user.tenant_id == principal.tenant_id:
        require_manager(principal)
    if user.id == principal.user.id:
        raise InvalidRequestError("You cannot change your own role or status here.",
                                  fix="Ask another owner or an operator.")
    return user


def _owners_left(db: Session, tenant_id: str, without: str) -> int:
    return db.scalar(select(func.count()).select_from(User).where(
        User.tenant_id == tenant_id, User.role == "owner", User.status == "active", User.id != without)) or 0


def set_role(db: Session, principal: Principal, user_id: str, role: str) -> User:
    """Make a user owner, admin or member; only owners (or operators) grant or take ownership."""
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    user = _target(db, principal, user_id)
    owner_change = "owner" in (role, user.role)
    if owner_change and principal.user.role != "owner" and not _is_operator(principal):
        raise ForbiddenError("Only an owner may grant or take ownership.")
    if user.role == "owner" and role != "owner" and _owners_left(db, user.tenant_id, user.id) == 0:
        raise InvalidRequestError("A tenant keeps at least one active owner.")
    user.role = role
    events.emit(db, "user.role_changed", tenant_id=user.tenant_id, resource_id=user.id,
                actor=principal.user.id, payload={"role": role})
    return user


def set_status(db: Session, principal: Principal, user_id: str, status: str) -> User:
    """Disable (ending every session at once) or re-enable a user."""
    if status not in ("active", "disabled"):
        raise ValidationError("status must be active or disabled", field="status")
    user = _target(db, principal, user_id)
    # Either way: an admin must not re-enable a co-owner whom an owner locked out.
    if user.role == "owner" and principal.user.role != "owner" and not _is_operator(principal):
        raise ForbiddenError("Only an owner may disable or re-enable an owner.")
    if status == "disabled" and user.role == "owner" and _owners_left(db, user.tenant_id, user.id) == 0:
        raise InvalidRequestError("A tenant keeps at least one active owner.")
    user.status = status
    if status == "disabled":
        db.execute(update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
                   .values(revoked_at=utcnow()))
    events.emit(db, f"user.{'disabled' if status == 'disabled' else 'enabled'}", tenant_id=user.tenant_id,
                resource_id=user.id, actor=principal.user.id)
    return user


def list_tenants(db: Session, principal: Principal) -> list[TenantSummary]:
    """Every tenant of the box with its owner and counts (operators only)."""
    require_operator(principal)
    users = select(func.count()).where(User.tenant_id == Tenant.id).scalar_subquery()
    domains = select(func.count()).where(Domain.tenant_id == Tenant.id).scalar_subquery()
    inboxes = select(func.count()).where(Inbox.tenant_id == Tenant.id, Inbox.status != "deleted").scalar_subquery()
    owner = (select(User.email).where(User.tenant_id == Tenant.id, User.role == "owner")
             .order_by(User.created_at).limit(1).scalar_subquery())
    rows = db.execute(select(Tenant, owner, users, domains, inboxes).order_by(Tenant.created_at, Tenant.id))
    return [TenantSummary(t, o, u, d, i) for t, o, u, d, i in rows]
