"""Contacts of an inbox (contract section 11, issue 17): cards, search, auto-contacts, anniversaries.

One person is one contact per inbox: addresses are normalised (lower case, the domain in punycode)
and unique per inbox in `contact_emails`, so a duplicate is a 409 naming the other contact and 20
concurrent sends to a new address make one contact. The relationship with a contact (message
counts, last inbound and outbound) is computed from the inbox's messages when read, never stored
twice; only the send path's own `last_outbound_at` is kept on the row. Anniversaries are planned in
the schedule (appliance/services/automation/schedule.py) at 09:00 in the inbox's zone.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Text, bindparam, cast, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, ValidationError
from appliance.ids import new_id
from appliance.models import Contact, ContactEmail, ContactShare, Inbox, Label, Message, Schedule, Tenant
from appliance.services import tenancy
from appliance.services.automation import events, schedule
from appliance.services.identity.settings import inbox_settings
from appliance.services.mail import labels as label_registry
from appliance.services.mail.compose import normalize_address

FIELDS = ("full_name", "emails", "phones", "company", "notes", "labels", "anniversaries")
ANNIVERSARY_SOURCE = "contact_anniversary"
ANNIVERSARY_HOUR = 9
_DATE = re.compile(r"^(?:(\d{4})|-)-(\d{2})-(\d{2})$")  # YYYY-MM-DD or --MM-DD
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PHONE_QUERY = re.compile(r"^\+?[\d\s().\-/]+$")
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


# --- input ----------------------------------------------------------------------------------
def normalize_email(value: str, where: str = "address") -> str:
    """One spelling per address: lower case, the domain in punycode (400 for a non-address)."""
    return normalize_address(value, where).lower()


def _emails(entries: list[dict]) -> list[dict]:
    out, seen = [], set()
    for i, entry in enumerate(entries or []):
        address = normalize_email(str(entry.get("address") or ""), f"emails[{i}].address")
        if address not in seen:
            seen.add(address)
            out.append({"label": str(entry.get("label") or "")[:64], "address": address})
    return out


def _phones(entries: list[dict]) -> list[dict]:
    out = []
    for i, entry in enumerate(entries or []):
        number = " ".join(str(entry.get("number") or "").split())
        if not number or not any(c.isdigit() for c in number):
            raise ValidationError(f"phones[{i}].number needs digits", field=f"phones[{i}].number",
                                  fix="Send a number like +41 44 123 45 67")
        out.append({"label": str(entry.get("label") or "")[:64], "number": number[:64]})
    return out


def parse_date(value: str, where: str) -> tuple[int | None, int, int]:
    """(year or None, month, day) of `YYYY-MM-DD` or `--MM-DD`; 400 for anything else."""
    match = _DATE.match(value or "")
    year = int(match.group(1)) if match and match.group(1) else None
    try:
        if match is None:
            raise ValueError
        dt.date(year or 2000, int(match.group(2)), int(match.group(3)))  # 2000: 29 Feb is valid
    except ValueError:
        raise ValidationError(f"{where} is not a date", field=where,
                              fix="Send YYYY-MM-DD, or --MM-DD when the year is unknown") from None
    return year, int(match.group(2)), int(match.group(3))


def _anniversaries(entries: list[dict]) -> list[dict]:
    out, seen = [], set()
    for i, entry in enumerate(entries or []):
        kind = str(entry.get("type") or "").lower()
        if not _TYPE.match(kind):
            raise ValidationError(f"anniversaries[{i}].type must be a word like birthday",
                                  field=f"anniversaries[{i}].type")
        if kind in seen:
            raise ValidationError(f"anniversaries[{i}]: one {kind} per contact", field=f"anniversaries[{i}].type")
        seen.add(kind)
        parse_date(str(entry.get("date") or ""), f"anniversaries[{i}].date")
        out.append({"type": kind, "date": entry["date"]})
    return out


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "emails" in out:
        out["emails"] = _emails(out["emails"])
    if "phones" in out:
        out["phones"] = _phones(out["phones"])
    if "anniversaries" in out:
        out["anniversaries"] = _anniversaries(out["anniversaries"])
    if "labels" in out:
        out["labels"] = list(dict.fromkeys(str(n) for n in out["labels"] or [] if n))
    for key in ("full_name", "company", "notes"):
        if key in out:
            out[key] = (out[key] or "").strip()
    return out


# --- use cases ------------------------------------------------------------------------------
def create_contact(db: Session, inbox: Inbox, data: dict[str, Any], *, actor: Any,
                   origin: dict | None = None, uid: str | None = None) -> Contact:
    """A new contact; an address already on another contact of the inbox → 409 naming it."""
    data = _clean(data)
    now = utcnow()
    contact = Contact(id=new_id("ctc"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, uid=uid, full_name="",
                      company="", notes="", phones=[], labels=[], anniversaries=[],
                      origin=origin or {"source": "manual"}, search_text="", created_at=now, updated_at=now)
    db.add(contact)
    _apply(db, inbox, contact, {"emails": [], **data})
    db.flush()
    events.emit(db, "contact.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=contact.id,
                actor=actor, payload={"full_name": contact.full_name, "emails": _addresses(db, contact.id)})
    return contact


def update_contact(db: Session, inbox: Inbox, contact_id: str, changes: dict[str, Any], *, actor: Any) -> Contact:
    """Change some fields (those given); emails given replace the contact's addresses."""
    contact = get_contact(db, inbox, contact_id)
    _apply(db, inbox, contact, _clean(changes))
    contact.updated_at = utcnow()
    db.flush()
    events.emit(db, "contact.updated", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=contact.id,
                actor=actor, payload={"fields": sorted(changes)})
    return contact


def delete_contact(db: Session, inbox: Inbox, contact_id: str, *, actor: Any) -> None:
    """Delete a contact, its addresses and its planned anniversaries."""
    contact = get_contact(db, inbox, contact_id)
    schedule.cancel_prefix(db, f"anniversary:{contact.id}:")
    db.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact.id))
    db.delete(contact)
    events.emit(db, "contact.deleted", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=contact_id,
                actor=actor, payload={"full_name": contact.full_name})


def get_contact(db: Session, inbox: Inbox, contact_id: str) -> Contact:
    """The inbox's contact; 404 for another inbox's or tenant's."""
    return tenancy.get_owned(db, Contact, contact_id, inbox.tenant_id, where=(Contact.inbox_id == inbox.id,),
                             message="No such contact in this inbox.")


def find_by_address(db: Session, inbox_id: str, address: str) -> Contact | None:
    """The inbox's contact holding this (normalised) address, if any."""
    row = db.scalar(select(ContactEmail.contact_id).where(ContactEmail.inbox_id == inbox_id,
                                                          ContactEmail.address == address))
    return db.get(Contact, row) if row else None


def _apply(db: Session, inbox: Inbox, contact: Contact, data: dict[str, Any]) -> None:
    for key in ("full_name", "company", "notes", "phones"):
        if key in data:
            setattr(contact, key, data[key])
    if "labels" in data:
        label_registry.ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=data["labels"], kind="contact")
        contact.labels = data["labels"]
    if "emails" in data:
        _set_emails(db, contact, data["emails"])
    addresses = [e["address"] for e in data["emails"]] if "emails" in data else _addresses(db, contact.id)
    if not contact.full_name and addresses:
        contact.full_name = addresses[0]  # a card without a name is known by its address
    contact.search_text = _search_text(contact, addresses)
    if "anniversaries" in data:
        contact.anniversaries = data["anniversaries"]
    if "anniversaries" in data or ("full_name" in data and contact.anniversaries):
        plan_anniversaries(db, inbox, contact)  # the events carry the name


def _set_emails(db: Session, contact: Contact, emails: list[dict]) -> None:
    if emails:
        clash = db.execute(select(ContactEmail.address, Contact.id, Contact.full_name)
                           .join(Contact, Contact.id == ContactEmail.contact_id)
                           .where(ContactEmail.inbox_id == contact.inbox_id, ContactEmail.contact_id != contact.id,
                                  ContactEmail.address.in_([e["address"] for e in emails]))).first()
        if clash is not None:
            raise ConflictError(f"{clash[0]} is already on contact {clash[1]} ({clash[2]}).", field="emails",
                                fix=f"Edit contact {clash[1]} (PATCH /v1/contacts/{clash[1]}/) or remove the address.")
    db.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact.id))
    db.flush()
    db.add_all(ContactEmail(id=new_id("cem"), contact_id=contact.id, inbox_id=contact.inbox_id, address=e["address"],
                            label=e["label"], position=i) for i, e in enumerate(emails))
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:  # the same address was added by another writer meanwhile
        raise ConflictError("An address of this contact was just added to another contact; retry.",
                            field="emails") from None


def _search_text(contact: Contact, addresses: list[str]) -> str:
    parts = [contact.full_name, contact.company, *addresses]
    for phone in contact.phones or []:
        parts += [phone["number"], re.sub(r"\D", "", phone["number"])]
    return "\n".join(p.lower() for p in parts if p)


def _addresses(db: Session, contact_id: str) -> list[str]:
    return list(db.scalars(select(ContactEmail.address).where(ContactEmail.contact_id == contact_id)
                           .order_by(ContactEmail.position)))


# --- lists and search -----------------------------------------------------------------------
def list_contacts(db: Session, inbox: Inbox, *, q: str | None = None, label: str | None = None,
                  position: int = 0, limit: int = 50) -> tuple[list[Contact], int]:
    """One page of the inbox's contacts by name, and how many match in all."""
    query = select(Contact).where(Contact.inbox_id == inbox.id)
    if q and q.strip():
        query = query.where(_matches(db, inbox.id, q.strip().lower()))
    if label:
        query = query.where(_has_label(db, inbox.id, label))
    query = tenancy.owned(query, Contact, inbox.tenant_id)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    rows = list(db.scalars(query.order_by(func.lower(Contact.full_name), Contact.id).offset(position).limit(limit)))
    return rows, total


def _matches(db: Session, inbox_id: str, q: str):  # noqa: ANN202 - a SQL condition
    terms = [q]
    if _PHONE_QUERY.match(q) and sum(c.isdigit() for c in q) >= 3:
        terms.append(re.sub(r"\D", "", q))
    patterns = [f"%{t.translate(_LIKE_ESCAPE)}%" for t in dict.fromkeys(terms)]
    if db.get_bind().dialect.name == "sqlite":
        # The FTS5 trigram table answers LIKE from its index (terms of 3 characters or more).
        sql = text("SELECT contact_id FROM contacts_fts WHERE inbox_id = :inbox AND ("
                   + " OR ".join(f"search_text LIKE :p{i} ESCAPE '\\'" for i in range(len(patterns))) + ")")
        ids = select(sql.bindparams(inbox=inbox_id, **{f"p{i}": p for i, p in enumerate(patterns)})
                     .columns(contact_id=Text).subquery().c.contact_id)
        return Contact.id.in_(ids)
    return or_(*(Contact.search_text.like(p, escape="\\") for p in patterns))  # the trigram GIN index


def _has_label(db: Session, inbox_id: str, label: str):  # noqa: ANN202 - a SQL condition
    """`label` is a name or a label id (`lbl_`) of this inbox."""
    name = label
    if label.startswith("lbl_"):
        name = db.scalar(select(Label.name).where(Label.id == label, Label.inbox_id == inbox_id)) or "\x00none"
    # Labels are a JSON list of names: match the JSON string itself, quotes included.
    needle = json.dumps(name)
    return cast(Contact.labels, Text).contains(needle, autoescape=True)


# --- rendering ------------------------------------------------------------------------------
def contact_to_dict(db: Session, contact: Contact, *, detail: bool = False) -> dict[str, Any]:
    """The API's contact object (`detail`: with `active_sequences` and `relationship`)."""
    return render_contacts(db, [contact], detail=detail)[0]


def render_contacts(db: Session, rows: list[Contact], *, detail: bool = False) -> list[dict[str, Any]]:
    """Contact objects for a page: their addresses and last inbound mail in one query each.

    A list's `last_contacted_at` is the later of the last mail received from the contact (from the
    messages, through their (inbox_id, from_email) index) and the send path's `last_outbound_at`;
    the detail computes the whole relationship from the messages."""
    if not rows:
        return []
    emails = _emails_of(db, [c.id for c in rows])
    last_in = _last_inbound(db, rows[0].inbox_id, [e["address"] for c in rows for e in emails.get(c.id, [])])
    out = []
    for contact in rows:
        mine = emails.get(contact.id, [])
        latest = [last_in[e["address"]] for e in mine if e["address"] in last_in] + [contact.last_outbound_at]
        item = {**card_of(contact, mine), "contact_id": contact.id, "inbox_id": contact.inbox_id,
                "notes": contact.notes, "labels": contact.labels or [], "uid": contact.uid,
                "source": (contact.origin or {}).get("source", "manual"),
                "last_contacted_at": _iso(max(filter(None, latest), default=None)),
                "created_at": _iso(contact.created_at), "updated_at": _iso(contact.updated_at)}
        if detail:
            rel = relationship(db, contact, [e["address"] for e in mine])
            item["last_contacted_at"] = max(filter(None, (rel["last_inbound_at"], rel["last_outbound_at"],
                                                          item["last_contacted_at"])), default=None)
            from appliance.services.automation import sequences  # noqa: PLC0415 - sequences send through contacts' area
            item["active_sequences"] = sequences.active_for_contact(db, contact.id)  # issue 20.5
            item["relationship"] = rel
        out.append(item)
    return out


def card_of(contact: Contact, emails: list[dict]) -> dict[str, Any]:
    """What a card carries (vCard, shares): name, addresses, phones, company, dates."""
    return {"full_name": contact.full_name, "emails": emails, "phones": contact.phones or [],
            "company": contact.company, "anniversaries": contact.anniversaries or []}


def _emails_of(db: Session, contact_ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in db.execute(select(ContactEmail.contact_id, ContactEmail.label, ContactEmail.address)
                          .where(ContactEmail.contact_id.in_(contact_ids)).order_by(ContactEmail.position)):
        out.setdefault(row.contact_id, []).append({"label": row.label, "address": row.address})
    return out


def emails_of(db: Session, contact: Contact) -> list[dict]:
    """The contact's addresses, in order: [{label, address}]."""
    return _emails_of(db, [contact.id]).get(contact.id, [])


def _last_inbound(db: Session, inbox_id: str, addresses: list[str]) -> dict[str, dt.datetime]:
    if not addresses:
        return {}
    return dict(db.execute(select(Message.from_email, func.max(Message.created_at)).where(
        Message.inbox_id == inbox_id, Message.from_email.in_(addresses), Message.direction == "inbound")
        .group_by(Message.from_email)).all())


def relationship(db: Session, contact: Contact, addresses: list[str]) -> dict[str, Any]:
    """Strength, message count, last inbound and outbound, computed from the inbox's messages."""
    inbound = db.execute(select(func.count(), func.max(Message.created_at)).where(
        Message.inbox_id == contact.inbox_id, Message.direction == "inbound",
        Message.from_email.in_(addresses))).one() if addresses else (0, None)
    out_count, last_out = _outbound(db, contact.inbox_id, addresses)
    last_out = max(filter(None, (last_out, contact.last_outbound_at)), default=None)
    count = inbound[0] + out_count
    latest = max(filter(None, (inbound[1], last_out)), default=None)
    # A card accepted from a share was introduced by that inbox: where the relationship began.
    return {"strength": _strength(count, latest), "message_count": count, "last_inbound_at": _iso(inbound[1]),
            "last_outbound_at": _iso(last_out), "introduced_by": (contact.origin or {}).get("introduced_by")}


def _outbound(db: Session, inbox_id: str, addresses: list[str]) -> tuple[int, dt.datetime | None]:
    if not addresses:
        return 0, None
    # Recipients are JSON lists ({"email", "name"}); the quoted address matches exactly one entry.
    doc = func.lower(cast(Message.to_addrs, Text) + cast(Message.cc_addrs, Text))
    cond = or_(*(doc.contains(f'"{a}"', autoescape=True) for a in addresses))
    row = db.execute(select(func.count(), func.max(Message.created_at)).where(
        Message.inbox_id == inbox_id, Message.direction == "outbound", cond)).one()
    return row[0], row[1]


def _strength(count: int, latest: dt.datetime | None) -> float:
    """0..1: how much mail (saturating at 20 messages), weighed by how recent the last one is."""
    if not count or latest is None:
        return 0.0
    days = max(0.0, (utcnow() - latest).total_seconds() / 86400)
    recency = 1.0 if days <= 30 else max(0.0, 1 - (days - 30) / 335)
    return round(0.7 * min(1.0, math.log1p(count) / math.log1p(20)) + 0.3 * recency, 2)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None


# --- auto-contacts (the send path) ----------------------------------------------------------
def record_sent(db: Session, inbox: Inbox, recipients: list[str], names: dict[str, str], now: dt.datetime) -> None:
    """Mail the inbox sends: known recipients' `last_outbound_at` moves to now, and (inbox setting
    `auto_contacts`, default on) an unknown recipient becomes a contact. Called once per send in
    the send's transaction; a concurrent send creating the same contact wins the unique address
    index and this one simply finds it (one contact, however many sends race)."""
    addresses = list(dict.fromkeys(a.lower() for a in recipients if a))
    if not addresses:
        return
    known = set(db.scalars(_KNOWN, {"inbox_id": inbox.id, "addresses": addresses}))
    if set(addresses) - known and inbox_settings(inbox, db.get(Tenant, inbox.tenant_id)).get("auto_contacts", True):
        for address in addresses:
            if address not in known and _auto_create(db, inbox, address, names.get(address, ""), now):
                known.add(address)
    db.execute(_TOUCH, {"b_inbox": inbox.id, "b_addresses": addresses, "b_now": now})


# Built once (the send path runs them on every send); Core statements: a contact created by this
# send already carries last_outbound_at, and no other contact is loaded by the send.
_EMAILS = ContactEmail.__table__.c
_KNOWN = select(_EMAILS.address).where(_EMAILS.inbox_id == bindparam("inbox_id"),
                                       _EMAILS.address.in_(bindparam("addresses", expanding=True)))
_TOUCH = (update(Contact.__table__)
          .where(Contact.__table__.c.id.in_(select(_EMAILS.contact_id).where(
              _EMAILS.inbox_id == bindparam("b_inbox"), _EMAILS.address.in_(bindparam("b_addresses", expanding=True)))))
          .values(last_outbound_at=bindparam("b_now")))


def _auto_create(db: Session, inbox: Inbox, address: str, name: str, now: dt.datetime) -> bool:
    contact = Contact(id=new_id("ctc"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, full_name=name or address,
                      company="", notes="", phones=[], labels=[], anniversaries=[], origin={"source": "auto"},
                      search_text="", created_at=now, updated_at=now, last_outbound_at=now)
    contact.search_text = _search_text(contact, [address])
    try:
        with db.begin_nested():
            db.add(contact)
            db.flush()
            db.add(ContactEmail(id=new_id("cem"), contact_id=contact.id, inbox_id=inbox.id, address=address,
                                label="", position=0))
            db.flush()
    except IntegrityError:
        return False  # another send made it first: that contact is the one
    events.emit(db, "contact.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=contact.id,
                actor=events.SYSTEM,
                payload={"full_name": contact.full_name, "emails": [address], "source": "auto"})
    return True


# --- anniversaries --------------------------------------------------------------------------
def zone_of(db: Session, inbox: Inbox) -> dt.tzinfo:
    """The inbox's zone (its own, else its tenant's default, else UTC)."""
    name = inbox_settings(inbox, db.get(Tenant, inbox.tenant_id)).get("default_timezone") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.timezone.utc


def next_occurrence(month: int, day: int, zone: dt.tzinfo, after: dt.datetime) -> dt.datetime:
    """The first 09:00 (in `zone`) of month/day strictly after `after`, in UTC; 29 February falls
    on 28 February in years without one."""
    year = after.astimezone(zone).year
    while True:
        last = 29 if month == 2 and _leap(year) else (dt.date(year + (month == 12), month % 12 + 1, 1)
                                                      - dt.timedelta(days=1)).day
        at = dt.datetime(year, month, min(day, last), ANNIVERSARY_HOUR, tzinfo=zone).astimezone(dt.timezone.utc)
        if at > after:
            return at
        year += 1


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _event_type(kind: str) -> str:
    return f"contact.{kind}" if kind in ("birthday", "anniversary", "nameday") else "contact.anniversary"


def plan_anniversaries(db: Session, inbox: Inbox, contact: Contact) -> None:
    """One schedule row per anniversary of the contact (`anniversary:<contact_id>:<type>`)."""
    schedule.cancel_prefix(db, f"anniversary:{contact.id}:")
    zone, now = zone_of(db, inbox), utcnow()
    for entry in contact.anniversaries or []:
        _year, month, day = parse_date(entry["date"], "date")
        schedule.plan(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, key=f"anniversary:{contact.id}:{entry['type']}",
                      source=ANNIVERSARY_SOURCE, event_type=_event_type(entry["type"]),
                      due_at=next_occurrence(month, day, zone, now), resource_id=contact.id,
                      payload={"contact_id": contact.id, "full_name": contact.full_name, "type": entry["type"],
                               "date": entry["date"]})


def _next_anniversary(db: Session, row: Schedule) -> dt.datetime | None:
    """After a firing: the same date next year (None once the contact is gone)."""
    contact = db.get(Contact, row.resource_id) if row.resource_id else None
    inbox = db.get(Inbox, row.inbox_id) if row.inbox_id else None
    if contact is None or inbox is None:
        return None
    _year, month, day = parse_date(str((row.payload or {}).get("date")), "date")
    return next_occurrence(month, day, zone_of(db, inbox), row.due_at)


def register_schedule() -> None:
    """Anniversary rows re-arm a year on (called at start by register_handlers)."""
    schedule.register_next(ANNIVERSARY_SOURCE, _next_anniversary)


# --- the agenda (issue 18 reads these) ------------------------------------------------------
def pending_agenda_items(db: Session, inbox_id: str) -> list[dict]:
    """The inbox's pending incoming shares, as agenda items."""
    now = utcnow()
    rows = db.execute(select(ContactShare, Inbox.address).join(Inbox, Inbox.id == ContactShare.from_inbox_id)
                      .where(ContactShare.to_inbox_id == inbox_id, ContactShare.status == "pending",
                             ContactShare.expires_at > now).order_by(ContactShare.created_at)).all()
    out = []
    for share, sender in rows:
        what = (share.parameters or {}).get("card", {}).get("full_name") or share.contact_address
        title = (f"{sender} offers the contact {what}" if share.type == "offer"
                 else f"{sender} asks for the contact {share.contact_address}")
        out.append({"kind": "share", "id": share.id, "title": title, "at": None, "pending": True,
                    "resource": {"share_id": share.id, "type": share.type, "from_inbox_id": share.from_inbox_id,
                                 "contact_address": share.contact_address,
                                 "expires_at": _iso(share.expires_at)}})
    return out
