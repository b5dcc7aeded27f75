"""Inboxes (contract section 3): one address per agent on a verified domain of the tenant."""
from __future__ import annotations

import zoneinfo

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, ForbiddenError, ValidationError
from appliance.ids import new_id
from appliance.models import AgentToken, DistributionList, Domain, Inbox, Message
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso
from appliance.services.identity.auth import Principal, may_use_inbox, require_manager, usable_inbox
from appliance.services.validation import normalize_email, reject_control_chars

RESERVED_LOCAL_PARTS = ("postmaster", "abuse")  # RFC 2142: reserved for the domain's owner
STATUSES = ("active", "paused")


def _timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    # OSError: with the tzdata package installed, a name that is a directory of it ("Europe")
    # fails to open rather than to be found.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValidationError(f"default_timezone '{value}' is not an IANA time zone", field="default_timezone",
                              fix="Use a name like Europe/Berlin or America/New_York.") from None
    return value


def create_inbox(db: Session, principal: Principal, address: str, display_name: str = "",
                 default_timezone: str | None = None) -> Inbox:
    require_manager(principal)
    address = normalize_email(address, "address")
    reject_control_chars(display_name, "display_name")
    local, domain_name = address.split("@", 1)
    domain = tenancy.find_owned(db, Domain, principal.tenant_id, Domain.name == domain_name)
    if domain is None:
        raise ValidationError(f"{domain_name} is not one of your domains", field="address",
                              fix=f"Add it first: POST /v1/domains/ {{\"domain\": \"{domain_name}\"}}.")
    if domain.status != "verified":
        raise ValidationError(f"{domain_name} is not verified yet", field="address", code="domain_not_verified",
                              fix=f"Publish the records at GET /v1/domains/{domain_name}/, then "
                                  f"POST /v1/domains/{domain_name}/verify/.")
    if local.split("+", 1)[0] in RESERVED_LOCAL_PARTS and principal.user is not None and principal.user.role != "owner":
        raise ForbiddenError(f"{local}@ is reserved for the domain's owner (RFC 2142).", field="address")
    if db.scalar(select(exists().where(Inbox.address == address, Inbox.status != "deleted"))):
        raise ConflictError(f"{address} is already taken.", field="address")
    if db.scalar(select(exists().where(DistributionList.address == address))):  # issue 16.5
        raise ConflictError(f"{address} is already taken by a distribution list.", field="address")
    inbox = Inbox(id=new_id("inb"), tenant_id=principal.tenant_id, domain_id=domain.id, address=address,
                  display_name=display_name.strip(), default_timezone=_timezone(default_timezone),
                  status="active", created_at=utcnow())
    db.add(inbox)
    events.emit(db, "inbox.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=inbox.id,
                actor=principal.id, payload={"address": address})
    return inbox


def get_inbox(db: Session, principal: Principal, inbox_id: str) -> Inbox:
    """The tenant's live inbox the caller may use; 404 for another tenant's (never 403: no probing)."""
    return usable_inbox(db, principal, inbox_id)


def list_inboxes(db: Session, principal: Principal, *, after: str | None, limit: int) -> list[Inbox]:
    query = tenancy.owned(select(Inbox).where(Inbox.status != "deleted", may_use_inbox(principal)), Inbox,
                          principal.tenant_id)
    if after:
        query = query.where(Inbox.id > after)
    return list(db.scalars(query.order_by(Inbox.id).limit(limit)))


def update_inbox(db: Session, principal: Principal, inbox_id: str, changes: dict) -> Inbox:
    require_manager(principal)
    inbox = get_inbox(db, principal, inbox_id)
    if "display_name" in changes:
        inbox.display_name = reject_control_chars(changes["display_name"] or "", "display_name").strip()
    if "default_timezone" in changes:
        inbox.default_timezone = _timezone(changes["default_timezone"])
    if "status" in changes:
        if changes["status"] not in STATUSES:
            raise ValidationError("status must be active or paused", field="status")
        inbox.status = changes["status"]
    return inbox


def delete_inbox(db: Session, principal: Principal, inbox_id: str) -> None:
    """Soft-delete: the address is freed, tokens are revoked at once, mail waits for retention."""
    require_manager(principal)
    inbox = get_inbox(db, principal, inbox_id)
    now = utcnow()
    inbox.status, inbox.deleted_at = "deleted", now
    db.execute(update(AgentToken).where(AgentToken.inbox_id == inbox.id, AgentToken.status != "revoked")
               .values(status="revoked", revoked_at=now))
    events.emit(db, "inbox.deleted", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=inbox.id,
                actor=principal.id)


def counts(db: Session, inbox_ids: list[str]) -> dict[str, tuple[int, int]]:
    """(message_count, unread_count) per inbox, in one query."""
    if not inbox_ids:
        return {}
    rows = db.execute(select(Message.inbox_id, func.count(),
                             func.sum(case((and_(Message.is_read.is_(False), Message.direction == "inbound"), 1),
                                           else_=0)))
                      .where(Message.inbox_id.in_(inbox_ids)).group_by(Message.inbox_id))
    return {inbox_id: (total, int(unread or 0)) for inbox_id, total, unread in rows}


def inbox_to_dict(inbox: Inbox, message_count: int = 0, unread_count: int = 0) -> dict:
    return {"inbox_id": inbox.id, "address": inbox.address, "display_name": inbox.display_name,
            "default_timezone": inbox.default_timezone, "status": inbox.status,
            "created_at": iso(inbox.created_at), "message_count": message_count, "unread_count": unread_count}
