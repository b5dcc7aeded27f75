"""Acting on a tenant from the command line: whose authority a CLI command uses."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import InvalidRequestError, NotFoundError
from appliance.models import Domain, Inbox, User
from appliance.services.identity.auth import Principal
from appliance.services.validation import normalize_email


def _as_principal(user: User) -> Principal:
    return Principal(kind="user", tenant_id=user.tenant_id, user=user)


def principal_for(db: Session, email: str | None = None, *, domain: str | None = None,
                  address: str | None = None) -> Principal:
    """The user a CLI command acts as: --as EMAIL, else the owner of the named domain or
    inbox's tenant, else the appliance's only operator (the one-team box)."""
    if email:
        user = db.scalar(select(User).where(User.email == normalize_email(email, "--as")))
        if user is None or user.status != "active":
            raise NotFoundError(f"No active user {email}.")
        return _as_principal(user)
    tenant_id = None
    if domain:
        tenant_id = db.scalar(select(Domain.tenant_id).where(Domain.name == domain))
    elif address:
        tenant_id = db.scalar(select(Inbox.tenant_id).where(Inbox.address == address.lower(),
                                                          Inbox.status != "deleted"))
    if tenant_id:
        owner = db.scalar(select(User).where(User.tenant_id == tenant_id, User.role == "owner",
                                             User.status == "active").order_by(User.created_at))
        if owner is not None:
            return _as_principal(owner)
    operators = list(db.scalars(select(User).where(User.is_operator.is_(True), User.status == "active")))
    if len(operators) != 1:
        raise InvalidRequestError("Say whose tenant this is for.", fix="Add --as OWNER_EMAIL.")
    return _as_principal(operators[0])
