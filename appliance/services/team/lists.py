"""Distribution lists (issue 16.5): a shared address on a verified domain of the tenant whose mail
is stored once in each member inbox.

Owners and admins manage lists; members are live inboxes of the same tenant only (never outside
addresses, never another list). The listener finds a list at RCPT time (`find_for_recipient`,
asked only when no inbox has the address, so mail to inboxes pays nothing for lists) and
`member_copies` expands it inside the committer's transaction (appliance/services/mail/inbound.py):
every copy is written in the same transaction as the message, or none is.
"""
from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import DistributionList, DistributionListMember, Domain, Inbox, Message
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso
from appliance.services.identity.auth import Principal, require_manager
from appliance.services.validation import normalize_email, reject_control_chars

MAX_LISTS = 200  # per tenant
MAX_MEMBERS = 500  # per list: each message is written once per member in one transaction


def list_id_header(address: str) -> str:
    """The list's RFC 2919 identifier, `<local.domain>`: stamped on each copy, and the loop check."""
    local, _, domain = address.lower().partition("@")
    return f"<{local}.{domain}>"


# --- management (owner/admin) -------------------------------------------------------------------

def create_list(db: Session, principal: Principal, address: str, name: str = "") -> DistributionList:
    """A new list at address, on one of the tenant's verified domains; 409 when the address is taken."""
    require_manager(principal)
    address = normalize_email(address, "address")
    name = reject_control_chars(name or "", "name").strip()
    domain_name = address.split("@", 1)[1]
    domain = tenancy.find_owned(db, Domain, principal.tenant_id, Domain.name == domain_name)
    if domain is None or domain.status != "verified":
        raise ValidationError(f"{domain_name} is not a verified domain of yours", field="address",
                              code="domain_not_verified", fix="Verify the domain first (GET /v1/domains/).")
    if address_taken(db, address):
        raise ConflictError(f"{address} is already taken by an inbox or a list.", field="address")
    count = db.scalar(tenancy.owned(select(func.count()).select_from(DistributionList), DistributionList,
                                    principal.tenant_id)) or 0
    if count >= MAX_LISTS:
        raise ConflictError(f"A tenant has at most {MAX_LISTS} lists.")
    row = DistributionList(id=new_id("dl"), tenant_id=principal.tenant_id, domain_id=domain.id, address=address,
                           name=name[:200], created_by=principal.id[:40], created_at=utcnow())
    db.add(row)
    events.emit(db, "distribution_list.created", tenant_id=row.tenant_id, resource_id=row.id,
                actor=principal.id, payload={"address": address})
    db.flush()
    return row


def address_taken(db: Session, address: str) -> bool:
    """True when a live inbox or a list has the address (inbox creation asks this too)."""
    inbox = exists().where(Inbox.address == address, Inbox.status != "deleted")
    listed = exists().where(DistributionList.address == address)
    return bool(db.scalar(select(inbox)) or db.scalar(select(listed)))


def list_lists(db: Session, principal: Principal) -> list[DistributionList]:
    """The tenant's lists, oldest first."""
    require_manager(principal)
    query = tenancy.owned(select(DistributionList), DistributionList, principal.tenant_id)
    return list(db.scalars(query.order_by(DistributionList.id)))


def get_list(db: Session, principal: Principal, list_id: str) -> DistributionList:
    """The tenant's list; 404 for another tenant's (never 403: no probing)."""
    require_manager(principal)
    return tenancy.get_owned(db, DistributionList, list_id, principal.tenant_id, message="No such list.")


def delete_list(db: Session, principal: Principal, list_id: str) -> None:
    """Delete a list: its address receives nothing from now on (550 at RCPT)."""
    row = get_list(db, principal, list_id)
    db.execute(delete(DistributionListMember).where(DistributionListMember.list_id == row.id))
    events.emit(db, "distribution_list.deleted", tenant_id=row.tenant_id, resource_id=row.id,
                actor=principal.id, payload={"address": row.address})
    db.delete(row)
    db.flush()


def add_member(db: Session, principal: Principal, list_id: str, inbox_id: str) -> DistributionList:
    """Make one of the tenant's live inboxes a member; any other id is refused (400), a member twice 409."""
    row = get_list(db, principal, list_id)
    inbox = tenancy.find_owned(db, Inbox, principal.tenant_id, Inbox.id == inbox_id, Inbox.status != "deleted")
    if inbox is None:  # another tenant's inbox reads like one that does not exist
        raise ValidationError("inbox_id is not an inbox of your tenant", field="inbox_id",
                              fix="Members are inboxes of your tenant (GET /v1/inboxes/).")
    if db.get(DistributionListMember, (row.id, inbox.id)) is not None:
        raise ConflictError(f"{inbox.address} is already a member.", field="inbox_id")
    if len(members_of(db, row.id)) >= MAX_MEMBERS:
        raise ConflictError(f"A list has at most {MAX_MEMBERS} members.")
    db.add(DistributionListMember(list_id=row.id, inbox_id=inbox.id, tenant_id=row.tenant_id, added_at=utcnow()))
    _members_changed(db, principal, row, added=[inbox.id])
    db.flush()
    return row


def remove_member(db: Session, principal: Principal, list_id: str, inbox_id: str) -> None:
    """Take an inbox off the list; 404 when it is not a member."""
    row = get_list(db, principal, list_id)
    member = db.get(DistributionListMember, (row.id, inbox_id)) if isinstance(inbox_id, str) else None
    if member is None:
        raise NotFoundError("That inbox is not a member of this list.")
    db.delete(member)
    _members_changed(db, principal, row, removed=[inbox_id])
    db.flush()


def _members_changed(db: Session, principal: Principal, row: DistributionList, *, added: list[str] = (),
                     removed: list[str] = ()) -> None:
    events.emit(db, "distribution_list.members_changed", tenant_id=row.tenant_id, resource_id=row.id,
                actor=principal.id, payload={"added": list(added), "removed": list(removed)})


def members_of(db: Session, list_id: str) -> list[tuple[str, str, str]]:
    """(inbox id, address, status) of each member, by inbox id."""
    query = (select(Inbox.id, Inbox.address, Inbox.status)
             .join(DistributionListMember, DistributionListMember.inbox_id == Inbox.id)
             .where(DistributionListMember.list_id == list_id).order_by(Inbox.id))
    return [tuple(r) for r in db.execute(query)]


def list_to_dict(db: Session, row: DistributionList) -> dict:
    """The API's list object, with its members."""
    return {"list_id": row.id, "address": row.address, "name": row.name, "list_id_header": list_id_header(row.address),
            "created_at": iso(row.created_at),
            "members": [{"inbox_id": i, "address": a, "status": s} for i, a, s in members_of(db, row.id)
                        if s != "deleted"]}


# --- the listener's side --------------------------------------------------------------------------

_BY_ADDRESS = (select(DistributionList.id, func.count(Inbox.id).filter(Inbox.status == "active"),
                      func.count(Inbox.id).filter(Inbox.status == "paused"))
               .join(Domain, and_(Domain.id == DistributionList.domain_id, Domain.status == "verified"))
               .outerjoin(DistributionListMember, DistributionListMember.list_id == DistributionList.id)
               .outerjoin(Inbox, Inbox.id == DistributionListMember.inbox_id)
               .where(DistributionList.address == bindparam("address"))
               .group_by(DistributionList.id))


def find_for_recipient(conn: Session | Connection, address: str) -> tuple[str, int, int] | None:
    """The list at address (on a verified domain) with how many of its members are active and
    how many paused, or None. One indexed lookup (only on an address no inbox has)."""
    row = conn.execute(_BY_ADDRESS, {"address": address}).first()
    return (row[0], row[1], row[2]) if row is not None else None


def carries_list_id(raw: bytes, address: str) -> bool:
    """True when the message already went through this list (its List-Id names it): a loop."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    wanted = list_id_header(address).lower()
    return any(wanted in str(value).lower() for value in headers.get_all("List-Id") or [])


_MEMBERS = (select(DistributionListMember.list_id, DistributionListMember.inbox_id)
            .where(DistributionListMember.list_id.in_(bindparam("ids", expanding=True)))
            .order_by(DistributionListMember.list_id, DistributionListMember.inbox_id))
_DELIVERED = (select(Message.inbox_id)
              .where(Message.inbox_id.in_(bindparam("inboxes", expanding=True)),
                     Message.message_id_header == bindparam("mid"), func.lower(Message.envelope_to) == bindparam("to")))


def member_inboxes(db: Session, list_ids: list[str]) -> dict[str, list[str]]:
    """Each list's member inbox ids, as the writing transaction sees them."""
    found: dict[str, list[str]] = {list_id: [] for list_id in list_ids}
    if list_ids:
        for list_id, inbox_id in db.connection().execute(_MEMBERS, {"ids": sorted(set(list_ids))}):
            found[list_id].append(inbox_id)
    return found


def already_delivered(db: Session, inbox_ids: list[str], message_id: str, address: str) -> set[str]:
    """The inboxes already holding this Message-ID from the list at address (a resend or a loop)."""
    if not inbox_ids or not message_id:
        return set()
    rows = db.connection().execute(_DELIVERED, {"inboxes": inbox_ids, "mid": message_id, "to": address.lower()})
    return {row[0] for row in rows}
