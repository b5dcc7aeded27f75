"""Shares of contact cards between inboxes of one tenant (contract section 11, issue 17).

An `offer` hands one of the sending inbox's cards to another inbox; a `request` asks another inbox
for its card of an address. The receiving inbox accepts or declines. Accepting copies the card (a
copy, not a live link) into the inbox that gets it, recording where it came from, which seeds the
relationship; it is one conditional UPDATE on the pending row, so two concurrent accepts make one
contact. Pending shares expire after 30 days; resolved ones are deleted 7 days later.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Contact, ContactShare, Inbox
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.workspace import contacts

PENDING_TTL = dt.timedelta(days=30)
RESOLVED_TTL = dt.timedelta(days=7)
CARD_FIELDS = ("full_name", "emails", "phones", "company", "anniversaries")


def create_share(db: Session, inbox: Inbox, *, type_: str, to_inbox_id: str, contact_id: str | None = None,
                 contact_address: str | None = None, note: str = "", labels: list[str] | None = None,
                 actor: Any) -> ContactShare:
    """Offer a card to, or request one from, another inbox of the tenant (404 for any other)."""
    purge_shares(db)
    target = tenancy.find_owned(db, Inbox, inbox.tenant_id, Inbox.id == to_inbox_id, Inbox.status != "deleted")
    if target is None:
        raise NotFoundError("No such inbox in this tenant to share with.", field="to_inbox_id")
    if target.id == inbox.id:
        raise ValidationError("to_inbox_id: a share goes to another inbox", field="to_inbox_id")
    card: dict[str, Any] = {}
    if type_ == "offer":
        if not contact_id:
            raise ValidationError("contact_id is required for an offer", field="contact_id")
        card = _card(db, contacts.get_contact(db, inbox, contact_id))
        contact_address = (card["emails"] or [{}])[0].get("address", "")
    elif type_ == "request":
        if not contact_address:
            raise ValidationError("contact_address is required for a request", field="contact_address")
        contact_address = contacts.normalize_email(contact_address, "contact_address")
    else:
        raise ValidationError("type must be offer or request", field="type")
    now = utcnow()
    share = ContactShare(id=new_id("shr"), tenant_id=inbox.tenant_id, type=type_, status="pending",
                         from_inbox_id=inbox.id, to_inbox_id=target.id,
                         contact_id=contact_id if type_ == "offer" else None,
                         contact_address=contact_address or "", created_at=now, expires_at=now + PENDING_TTL,
                         parameters={"note": note or "", "labels": list(dict.fromkeys(labels or [])), "card": card})
    db.add(share)
    db.flush()
    events.emit(db, "contact.share_received", tenant_id=inbox.tenant_id, inbox_id=target.id, resource_id=share.id,
                actor=actor, payload={"type": type_, "from_inbox_id": inbox.id,
                                      "contact_address": share.contact_address,
                                      "full_name": card.get("full_name", "")})
    return share


def _card(db: Session, contact: Contact) -> dict[str, Any]:
    return contacts.card_of(contact, contacts.emails_of(db, contact))


def list_shares(db: Session, inbox: Inbox) -> list[ContactShare]:
    """The shares this inbox sent or received, newest first (expired and purged ones left out)."""
    now = utcnow()
    return list(db.scalars(tenancy.owned(select(ContactShare).where(
        or_(ContactShare.from_inbox_id == inbox.id, ContactShare.to_inbox_id == inbox.id),
        ContactShare.expires_at > now), ContactShare, inbox.tenant_id).order_by(ContactShare.id.desc()).limit(500)))


def _received(db: Session, inbox: Inbox, share_id: str) -> ContactShare:
    return tenancy.get_owned(db, ContactShare, share_id, inbox.tenant_id,
                             where=(ContactShare.to_inbox_id == inbox.id,), message="No such share for this inbox.")


def _resolve(db: Session, share: ContactShare, status: str) -> None:
    """pending → status, in one conditional UPDATE: of two concurrent calls one wins."""
    now = utcnow()
    won = db.execute(update(ContactShare).where(ContactShare.id == share.id, ContactShare.status == "pending",
                                                ContactShare.expires_at > now)
                     .values(status=status, resolved_at=now, expires_at=now + RESOLVED_TTL)).rowcount
    if won != 1:
        db.refresh(share)
        if share.status == "pending":
            raise ConflictError("This share expired (30 days) and can no longer be answered.", code="share_expired",
                                fix="Ask the other inbox to share the card again.")
        raise ConflictError(f"This share was already {share.status}.", fix="Nothing to do.")
    db.refresh(share)


def accept_share(db: Session, inbox: Inbox, share_id: str, *, actor: Any) -> ContactShare:
    """The receiving inbox accepts: the card is copied to the inbox that gets it."""
    share = _received(db, inbox, share_id)
    _resolve(db, share, "accepted")
    if share.type == "offer":
        into, card, source_inbox = inbox, share.parameters.get("card") or {}, share.from_inbox_id
    else:
        found = contacts.find_by_address(db, inbox.id, share.contact_address)
        if found is None:
            raise NotFoundError(f"This inbox has no contact with {share.contact_address} to share.",
                                fix="Create the contact first, or decline the request.")
        into, card, source_inbox = db.get(Inbox, share.from_inbox_id), _card(db, found), inbox.id
    share.result_contact_id = _copy(db, into, card, share, source_inbox, actor).id
    return share


def _copy(db: Session, into: Inbox, card: dict, share: ContactShare, source_inbox: str, actor: Any) -> Contact:
    """The card as a new contact of `into`; an address it already knows keeps that contact."""
    for email in card.get("emails") or []:
        existing = contacts.find_by_address(db, into.id, email["address"])
        if existing is not None:
            return existing
    data = {key: card.get(key) or ([] if key in ("emails", "phones", "anniversaries") else "") for key in CARD_FIELDS}
    data["labels"] = share.parameters.get("labels") or []
    return contacts.create_contact(db, into, data, actor=actor,
                                   origin={"source": "share", "share_id": share.id, "introduced_by": source_inbox})


def decline_share(db: Session, inbox: Inbox, share_id: str, *, actor: Any) -> ContactShare:
    """The receiving inbox declines: nothing is copied."""
    share = _received(db, inbox, share_id)
    _resolve(db, share, "declined")
    return share


def purge_shares(db: Session, now: dt.datetime | None = None) -> int:
    """Pending shares past 30 days become expired; resolved ones past their 7 days are deleted."""
    now = now or utcnow()
    db.execute(update(ContactShare).where(ContactShare.status == "pending", ContactShare.expires_at <= now)
               .values(status="expired", resolved_at=now, expires_at=now + RESOLVED_TTL))
    return db.execute(delete(ContactShare).where(ContactShare.status != "pending",
                                                 ContactShare.expires_at <= now)).rowcount


def share_to_dict(share: ContactShare) -> dict[str, Any]:
    """The API's share object."""
    status = share.status
    if status == "pending" and share.expires_at <= utcnow():
        status = "expired"
    return {"share_id": share.id, "type": share.type, "status": status, "from_inbox_id": share.from_inbox_id,
            "to_inbox_id": share.to_inbox_id, "contact_id": share.contact_id, "contact_address": share.contact_address,
            "parameters": share.parameters or {}, "result_contact_id": share.result_contact_id,
            "created_at": contacts._iso(share.created_at), "expires_at": contacts._iso(share.expires_at),
            "resolved_at": contacts._iso(share.resolved_at)}
