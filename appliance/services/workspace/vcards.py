"""vCard import and export of an inbox's contacts (contract section 11, issue 17), with vobject.

Import takes a file of many cards (vCard 3.0 and 4.0, folded lines, UTF-8 or Windows-1252): each
card is parsed and stored on its own (a savepoint each), so a bad card is reported by its index
and never stops the others. Import is idempotent: a card matches the inbox's contact with its UID,
else one holding one of its addresses; an unchanged match is skipped. PHOTO is skipped. Export
writes vCard 3.0 (what Thunderbird, Apple Contacts and Google Contacts all read) that import reads
back to the same data.
"""
from __future__ import annotations

import io
import quopri
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import GentError, ValidationError
from appliance.models import Contact, ContactEmail, Inbox
from appliance.services.workspace import contacts

MAX_CARDS = 10_000
_SKIP_TYPES = {"internet", "pref", "voice", "x400"}
_KNOWN_DATES = {"bday": "birthday", "anniversary": "anniversary", "x-anniversary": "anniversary"}
_DATE_IN = re.compile(r"^(\d{4}|--)-?(\d{2})-?(\d{2})")


class CardError(ValueError):
    """A card that cannot be read: reported by index, the others go on."""


def split_cards(data: bytes) -> list[str]:
    """The file's cards as text, each BEGIN:VCARD … END:VCARD (nesting is not allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    cards, current = [], None
    for line in text.splitlines():
        word = line.strip().upper()
        if word == "BEGIN:VCARD":
            if current is not None:
                cards.append("\n".join(current))  # an unterminated card: reported when parsed
            current = [line.strip()]
        elif current is not None:
            current.append(line)
            if word == "END:VCARD":
                cards.append("\n".join(current))
                current = None
    if current is not None:
        cards.append("\n".join(current))
    return cards


def import_vcards(db: Session, inbox: Inbox, data: bytes, *, actor: Any) -> dict[str, Any]:
    """POST /v1/contacts/import/: {created, updated, skipped, errors: [{index, message}]}."""
    result: dict[str, Any] = {"created": 0, "updated": 0, "skipped": 0, "errors": []}
    cards = split_cards(data)
    if not cards:
        raise ValidationError("The body holds no vCard (no BEGIN:VCARD line).", fix="Send a vCard file as text/vcard.")
    if len(cards) > MAX_CARDS:
        raise ValidationError(f"the file holds {len(cards)} cards; at most {MAX_CARDS} per import",
                                       fix="Split the file.")
    for index, card in enumerate(cards):
        try:
            with db.begin_nested():
                result[_store(db, inbox, parse_card(card), actor)] += 1
        except (CardError, GentError) as exc:
            result["errors"].append({"index": index, "message": str(getattr(exc, "message", exc))[:300]})
    return result


@dataclass
class _Line:
    name: str
    value: str  # still escaped (RFC 6350 3.4); _text and _split read it
    params: dict[str, list[str]] = field(default_factory=dict)


def _lines(text: str) -> dict[str, list[_Line]]:
    """The card's properties by lower-case name, from vobject's content-line parser (unfolding,
    groups, quoted parameters). vobject's own vCard objects are not used for reading: their text
    decoding drops what follows an unescaped comma in NOTE or FN, which real exports contain."""
    import vobject  # imported here, as in to_vcard: only vCard imports and exports use it

    out: dict[str, list[_Line]] = {}
    for raw, _number in vobject.base.getLogicalLines(io.StringIO(text), allowQP=True):
        name, params, value, _group = vobject.base.parseLine(raw)
        merged: dict[str, list[str]] = {}
        for param in params:
            merged.setdefault(param[0].upper(), []).extend(param[1:])
        out.setdefault(name.lower(), []).append(_Line(name.upper(), _decode(value, merged), merged))
    return out


def _decode(value: str, params: dict[str, list[str]]) -> str:
    """vCard 2.1's quoted-printable values, in their CHARSET (UTF-8 when none is named)."""
    if [v.upper() for v in params.get("ENCODING", [])] != ["QUOTED-PRINTABLE"]:
        return value
    charset = (params.get("CHARSET") or ["utf-8"])[0]
    try:
        return quopri.decodestring(value.encode("latin-1", "replace")).decode(charset, "replace")
    except LookupError:
        raise CardError(f"unknown charset {charset[:40]!r}") from None


def parse_card(text: str) -> dict[str, Any]:
    """One card's fields as the contacts service takes them (CardError when unreadable)."""
    if not text.rstrip().upper().endswith("END:VCARD"):
        raise CardError("the card has no END:VCARD")
    try:
        card = _lines(text)
    except CardError:
        raise
    except Exception as exc:  # vobject raises several types (ParseError, ValueError, …) for bad input
        raise CardError(f"unreadable card: {str(exc)[:200]}") from None
    data = {"full_name": _first(card, "fn") or _name(card), "emails": [], "phones": [], "company": "",
            "notes": _first(card, "note"), "labels": [], "anniversaries": []}
    for line in card.get("email", []):
        data["emails"].append({"label": _label(line), "address": _text(line.value).strip()})
    for line in card.get("tel", []):
        number = _text(line.value).strip()  # 4.0 may write it as a URI, tel:+1-555-0100
        data["phones"].append({"label": _label(line), "number": number[4:] if number[:4].lower() == "tel:" else number})
    if card.get("org"):
        data["company"] = ", ".join(u for u in (_text(part).strip() for part in _split(card["org"][0].value, ";")) if u)
    for line in card.get("categories", []):
        data["labels"] += [v for v in (_text(part).strip() for part in _split(line.value, ",")) if v]
    data["anniversaries"] = _dates(card)
    if not data["full_name"] and not data["emails"]:
        raise CardError("the card has neither a name nor an address")
    uid = _first(card, "uid")
    return {"uid": uid[:255] or None, **data}


def _split(value: str, sep: str) -> list[str]:
    """value split at each `sep` not escaped with a backslash (the parts stay escaped)."""
    parts, current, escaped = [], "", False
    for char in str(value or ""):
        if escaped:
            current, escaped = current + "\\" + char, False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts, current = parts + [current], ""
        else:
            current += char
    return parts + [current + ("\\" if escaped else "")]


def _text(value: str) -> str:
    """A vCard text value unescaped: \\n is a line break, \\, \\; \\\\ the character itself."""
    out, escaped = [], False
    for char in str(value or ""):
        if escaped:
            out.append("\n" if char in "nN" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def _first(card: dict[str, list[_Line]], name: str) -> str:
    lines = card.get(name)
    return _text(lines[0].value).strip() if lines else ""


def _name(card: dict[str, list[_Line]]) -> str:
    lines = card.get("n")
    if not lines:
        return ""
    parts = [_text(p).strip() for p in _split(lines[0].value, ";")] + [""] * 5
    family, given, additional, prefix = parts[0], parts[1], parts[2], parts[3]
    return " ".join(p for p in (prefix, given, additional, family) if p)


def _label(line: _Line) -> str:
    types = [t.lower().strip() for value in line.params.get("TYPE", []) for t in str(value).split(",")]
    useful = [t for t in types if t not in _SKIP_TYPES]
    return useful[0][:64] if useful else ""


def _dates(card: dict[str, list[_Line]]) -> list[dict]:
    out: dict[str, str] = {}
    for name, kind in _KNOWN_DATES.items():
        for line in card.get(name, []):
            out.setdefault(kind, _date(line))
    for line in card.get("x-gentbox-date", []):
        out.setdefault(_label(line) or "anniversary", _date(line))
    return [{"type": k, "date": v} for k, v in out.items()]


def _date(line: _Line) -> str:
    value = _text(line.value).strip()
    match = _DATE_IN.match(value)
    if match is None:
        raise CardError(f"{line.name}: {value[:40]!r} is not a date")
    year = match.group(1)
    # Apple writes a date without a year as 1604-MM-DD with X-APPLE-OMIT-YEAR.
    if year == "--" or "X-APPLE-OMIT-YEAR" in line.params:
        return f"--{match.group(2)}-{match.group(3)}"
    return f"{year}-{match.group(2)}-{match.group(3)}"


def _store(db: Session, inbox: Inbox, data: dict[str, Any], actor: Any) -> str:
    uid = data.pop("uid")
    match = _match(db, inbox, uid, data["emails"])
    if match is None:
        contacts.create_contact(db, inbox, data, actor=actor, origin={"source": "import"}, uid=uid)
        return "created"
    current = {**contacts.card_of(match, contacts.emails_of(db, match)), "notes": match.notes,
               "labels": match.labels or []}
    cleaned = contacts._clean(data)
    if not cleaned.get("full_name"):
        cleaned.pop("full_name", None)  # nameless: known by its address, as when it was created
    changes = {k: v for k, v in cleaned.items() if current.get(k) != v}
    if uid and match.uid is None:
        match.uid = uid
    if not changes:
        return "skipped"
    contacts.update_contact(db, inbox, match.id, changes, actor=actor)
    return "updated"


def _match(db: Session, inbox: Inbox, uid: str | None, emails: list[dict]) -> Contact | None:
    if uid:
        found = db.scalar(select(Contact).where(Contact.inbox_id == inbox.id, Contact.uid == uid))
        if found is not None:
            return found
    for entry in emails:
        try:
            address = contacts.normalize_email(entry["address"], "email")
        except GentError:
            continue  # the card's validation reports it
        found = contacts.find_by_address(db, inbox.id, address)
        if found is not None:
            return found
    return None


def export_vcards(db: Session, inbox: Inbox) -> str:
    """GET /v1/contacts/export/: every contact of the inbox as vCard 3.0, by name."""
    rows = db.scalars(select(Contact).where(Contact.inbox_id == inbox.id, Contact.tenant_id == inbox.tenant_id)
                      .order_by(Contact.full_name, Contact.id))
    return "".join(to_vcard(db, contact) for contact in rows)


def to_vcard(db: Session, contact: Contact) -> str:
    """One contact as a vCard 3.0 card (CRLF, folded at 75 octets)."""
    import vobject

    card = vobject.vCard()
    card.add("uid").value = contact.uid or contact.id
    card.add("fn").value = contact.full_name or ""
    parts = (contact.full_name or "").rsplit(" ", 1)
    card.add("n").value = vobject.vcard.Name(family=parts[-1] if len(parts) > 1 else parts[0],
                                             given=parts[0] if len(parts) > 1 else "")
    for email in db.execute(select(ContactEmail.label, ContactEmail.address)
                            .where(ContactEmail.contact_id == contact.id).order_by(ContactEmail.position)):
        line = card.add("email")
        line.value, line.type_param = email.address, ["INTERNET", email.label] if email.label else "INTERNET"
    for phone in contact.phones or []:
        line = card.add("tel")
        line.value = phone["number"]
        if phone.get("label"):
            line.type_param = phone["label"]
    if contact.company:
        card.add("org").value = [contact.company]
    if contact.notes:
        card.add("note").value = contact.notes
    if contact.labels:
        card.add("categories").value = list(contact.labels)
    for entry in contact.anniversaries or []:
        _add_date(card, entry)
    return card.serialize()


def _add_date(card, entry: dict) -> None:  # noqa: ANN001
    if entry["type"] == "birthday":
        card.add("bday").value = entry["date"]
    elif entry["type"] == "anniversary":
        card.add("x-anniversary").value = entry["date"]
    else:
        line = card.add("x-gentbox-date")
        line.value, line.type_param = entry["date"], entry["type"]
