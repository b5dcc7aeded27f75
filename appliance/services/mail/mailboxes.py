"""IMAP folders over the one store (issue 25, contract section 20): which messages a folder holds,
their persistent UIDs, their flags, and what EXPUNGE, COPY, MOVE and APPEND do to the messages.

A folder is a view of the inbox's messages, never a copy:
- INBOX: received mail; Sent: sent mail; Drafts: drafts (APPENDed to Drafts);
- Trash: messages labelled `trash`; Junk: labelled `junk` (or `suspicious`, the quarantine label);
  both hide a message from every other folder;
- one folder per `message` (or `any`) label of the inbox: the messages with that label.
`\\Seen` is the message's `is_read`; the other flags (`\\Flagged`, `\\Answered`, `\\Deleted`,
keywords) are kept per folder in `imap_uids`. A message gets the folder's next UID the first time
a session looks at the folder after it arrived there; UIDs never change and are never reused.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import ImapMailbox, ImapUid, Inbox, Label, Message, MessageRaw
from appliance.services.automation import events
from appliance.services.mail import labels as label_registry
from appliance.services.mail import messages

INBOX, SENT, DRAFTS, TRASH, JUNK = "INBOX", "Sent", "Drafts", "Trash", "Junk"
SPECIAL_USE = {INBOX: "", SENT: "\\Sent", DRAFTS: "\\Drafts", TRASH: "\\Trash", JUNK: "\\Junk"}
TRASH_LABEL, JUNK_LABEL, QUARANTINE_LABEL = "trash", "junk", "suspicious"
HIDING = {TRASH_LABEL, JUNK_LABEL, QUARANTINE_LABEL}  # labels that take a message out of the other folders
SEEN = "\\Seen"
STORED_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
MAX_KEYWORDS = 32


class _Raced(Exception):
    """Another session took the folder's next UIDs first: sync again."""


@dataclass(frozen=True)
class Entry:
    """One message as a folder shows it."""

    uid: int
    message_id: str
    flags: frozenset
    size: int
    internal_date: dt.datetime


@dataclass(frozen=True)
class View:
    """A folder's state: its UIDVALIDITY, next UID and messages in UID order."""

    mailbox_id: str
    name: str
    uid_validity: int
    uid_next: int
    entries: tuple[Entry, ...]


# --- which folders, and what is in them ------------------------------------------------------------
def _reserved(name: str) -> bool:
    return name.upper() == INBOX or name in SPECIAL_USE or name.lower() in HIDING


def folder_names(db: Session, inbox: Inbox) -> list[str]:
    """The inbox's folders: the five special ones, then one per message label, by name."""
    names = db.scalars(select(Label.name).where(Label.inbox_id == inbox.id, Label.type.in_(("message", "any")))
                       .order_by(Label.name))
    return list(SPECIAL_USE) + [n for n in names if not _reserved(n)]


def canonical(db: Session, inbox: Inbox, name: str) -> str:
    """The folder's name as stored (INBOX in any case is INBOX), or NotFoundError."""
    if name.upper() == INBOX:
        return INBOX
    if name in folder_names(db, inbox):
        return name
    raise NotFoundError(f"No folder named {name!r}.")


def _belongs(folder: str, direction: str, status: str, labels: list) -> bool:
    hidden = bool(HIDING.intersection(labels))
    if folder == TRASH:
        return TRASH_LABEL in labels
    if folder == JUNK:
        return TRASH_LABEL not in labels and bool({JUNK_LABEL, QUARANTINE_LABEL}.intersection(labels))
    if hidden:
        return False
    if folder == INBOX:
        return direction == "inbound"
    if folder == SENT:
        return direction == "outbound" and status != "draft"
    if folder == DRAFTS:
        return direction == "outbound" and status == "draft"
    return folder in labels


# --- UIDs --------------------------------------------------------------------------------------------
def _mailbox(db: Session, inbox: Inbox, name: str) -> ImapMailbox:
    box = db.scalar(select(ImapMailbox).where(ImapMailbox.inbox_id == inbox.id, ImapMailbox.name == name))
    if box is not None:
        return box
    # UIDVALIDITY: unique over the name's lifetimes (a label deleted and made again is a new folder).
    validity = int(utcnow().timestamp()) % 2_000_000_000 + random.randint(1, 100_000_000)
    box = ImapMailbox(id=new_id("imb"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, name=name,
                      uid_validity=validity, uid_next=1, created_at=utcnow())
    try:
        with db.begin_nested():
            db.add(box)
    except IntegrityError:
        raise _Raced() from None
    return box


def sync(db: Session, inbox: Inbox, name: str) -> View:
    """The folder as it stands: new members get UIDs, those that left lose theirs (caller commits)."""
    for _ in range(20):
        try:
            return _sync_once(db, inbox, name)
        except _Raced:
            db.rollback()
    raise ConflictError("The folder changed too often while it was read; try again.")


def _sync_once(db: Session, inbox: Inbox, name: str) -> View:
    box = _mailbox(db, inbox, name)
    rows = db.execute(select(Message.id, Message.direction, Message.status, Message.labels, Message.is_read,
                             Message.size, Message.created_at)
                      .where(Message.inbox_id == inbox.id).order_by(Message.created_at, Message.id)).all()
    members = {r.id: r for r in rows if _belongs(name, r.direction, r.status, r.labels or [])}
    known = {m: (uid, flags) for uid, m, flags in db.execute(
        select(ImapUid.uid, ImapUid.message_id, ImapUid.flags).where(ImapUid.mailbox_id == box.id))}
    gone = [m for m in known if m not in members]
    if gone:
        db.execute(delete(ImapUid).where(ImapUid.mailbox_id == box.id, ImapUid.message_id.in_(gone)))
    new = [m for m in members if m not in known]
    uid_next = box.uid_next
    if new:
        uid_next = _take_uids(db, box, new)
        known.update({m: (uid_next - len(new) + i, []) for i, m in enumerate(new)})
    entries = sorted((Entry(uid, m, _flags(members[m].is_read, flags), members[m].size, members[m].created_at)
                      for m, (uid, flags) in known.items() if m in members), key=lambda e: e.uid)
    return View(box.id, name, box.uid_validity, uid_next, tuple(entries))


def _take_uids(db: Session, box: ImapMailbox, message_ids: list[str]) -> int:
    """Give message_ids the folder's next UIDs, compare-and-set on uid_next; the new uid_next."""
    start = db.scalar(select(ImapMailbox.uid_next).where(ImapMailbox.id == box.id))
    moved = db.execute(update(ImapMailbox).where(ImapMailbox.id == box.id, ImapMailbox.uid_next == start)
                       .values(uid_next=start + len(message_ids)))
    if moved.rowcount != 1:
        raise _Raced()
    try:
        with db.begin_nested():
            db.add_all(ImapUid(mailbox_id=box.id, uid=start + i, message_id=m, flags=[])
                       for i, m in enumerate(message_ids))
    except IntegrityError:
        raise _Raced() from None
    box.uid_next = start + len(message_ids)
    return box.uid_next


def _flags(is_read: bool, stored: list) -> frozenset:
    return frozenset(stored or ()) | ({SEEN} if is_read else set())


# --- flags -------------------------------------------------------------------------------------------
def check_flags(flags: list[str]) -> list[str]:
    """Flags a client may set: the system ones and keywords (atoms without a backslash)."""
    out = []
    for flag in flags:
        if flag.startswith("\\"):
            known = {f.lower(): f for f in (SEEN, *STORED_FLAGS)}.get(flag.lower())
            if known is None:
                raise ValidationError(f"{flag} cannot be stored", field="flags")
            out.append(known)
        elif flag and len(flag) <= 64:
            out.append(flag)
        else:
            raise ValidationError("a keyword is 1 to 64 characters", field="flags")
    return list(dict.fromkeys(out))


def store_flags(db: Session, inbox: Inbox, view: View, uids: list[int], flags: list[str], mode: str,
                actor: str | None = None) -> None:
    """Set (`set`), add (`add`) or remove (`remove`) flags on the folder's messages with these UIDs;
    `\\Seen` goes to the message's is_read (with its `message.updated` event)."""
    flags = check_flags(flags)
    by_uid = {e.uid: e for e in view.entries}
    for uid in uids:
        entry = by_uid.get(uid)
        if entry is None:
            continue
        current = set(entry.flags)
        wanted = set(flags) if mode == "set" else current | set(flags) if mode == "add" else current - set(flags)
        if (SEEN in wanted) != (SEEN in current):
            _seen(db, inbox, entry.message_id, SEEN in wanted, actor)
        stored = sorted(wanted - {SEEN})
        if set(stored) != current - {SEEN}:
            if len([f for f in stored if not f.startswith("\\")]) > MAX_KEYWORDS:
                raise ValidationError(f"at most {MAX_KEYWORDS} keywords per message", field="flags")
            db.execute(update(ImapUid).where(ImapUid.mailbox_id == view.mailbox_id, ImapUid.uid == uid)
                       .values(flags=stored))
            # The event is what wakes other sessions IDLE-ing on the folder (on every node), as
            # `message.updated` does for \Seen: these flags live in imap_uids alone.
            events.emit(db, "message.flags_changed", tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                        resource_id=entry.message_id, actor=actor, payload={"folder": view.name, "flags": stored})


def _seen(db: Session, inbox: Inbox, message_id: str, is_read: bool, actor: str | None) -> None:
    try:
        messages.update_message(db, inbox, message_id, is_read=is_read, actor=actor)
    except NotFoundError:
        pass  # deleted meanwhile: the next sync drops it


# --- expunge, copy, move -------------------------------------------------------------------------
def expunge(db: Session, inbox: Inbox, view: View, uids: list[int] | None = None,
            actor: str | None = None) -> list[int]:
    """Take the `\\Deleted` messages (of uids, when given) out of the folder: from Trash they are
    deleted, from a label folder the label goes, from the others they move to Trash. Their UIDs."""
    chosen = set(uids) if uids is not None else None
    done = []
    for entry in view.entries:
        if "\\Deleted" not in entry.flags or (chosen is not None and entry.uid not in chosen):
            continue
        _leave(db, inbox, view.name, entry.message_id, actor)
        db.execute(delete(ImapUid).where(ImapUid.mailbox_id == view.mailbox_id, ImapUid.uid == entry.uid))
        done.append(entry.uid)
    return done


def _leave(db: Session, inbox: Inbox, folder: str, message_id: str, actor: str | None) -> None:
    if folder == TRASH:
        try:
            messages.delete_message(db, inbox, message_id, actor=actor)
        except NotFoundError:
            pass
        return
    if folder in SPECIAL_USE:
        _relabel(db, inbox, message_id, [TRASH_LABEL], [JUNK_LABEL, QUARANTINE_LABEL], actor)
    else:
        _relabel(db, inbox, message_id, [], [folder], actor)


def _relabel(db: Session, inbox: Inbox, message_id: str, add: list[str], remove: list[str],
             actor: str | None = None) -> None:
    try:
        message = messages.get_message(db, inbox, message_id)
    except NotFoundError:
        return
    names = [n for n in (message.labels or []) if n not in remove]
    names += [n for n in add if n not in names]
    messages.update_message(db, inbox, message_id, labels=names, actor=actor)


def _arrive(db: Session, inbox: Inbox, folder: str, message_id: str, actor: str | None) -> None:
    """Make the message a member of folder (COPY's half of MOVE)."""
    if folder == TRASH:
        _relabel(db, inbox, message_id, [TRASH_LABEL], [], actor)
    elif folder == JUNK:
        _relabel(db, inbox, message_id, [JUNK_LABEL], [TRASH_LABEL], actor)
    elif folder in (INBOX, SENT, DRAFTS):
        _relabel(db, inbox, message_id, [], list(HIDING), actor)
    else:
        _relabel(db, inbox, message_id, [folder], list(HIDING), actor)


def copy(db: Session, inbox: Inbox, view: View, uids: list[int], dest: str,
         actor: str | None = None) -> list[tuple[int, int]]:
    """COPY: each message joins dest (a label is added, Trash/Junk labels it); (source UID, dest UID)."""
    dest = canonical(db, inbox, dest)
    if dest in (SENT, DRAFTS) or (dest == INBOX and view.name != INBOX):
        _refuse_into(dest)
    chosen = [e for e in view.entries if e.uid in set(uids)]
    for entry in chosen:
        _arrive(db, inbox, dest, entry.message_id, actor)
    db.flush()
    after = {e.message_id: e.uid for e in sync(db, inbox, dest).entries}
    return [(e.uid, after[e.message_id]) for e in chosen if e.message_id in after]


def move(db: Session, inbox: Inbox, view: View, uids: list[int], dest: str,
         actor: str | None = None) -> list[tuple[int, int]]:
    """MOVE: each message leaves this folder and joins dest; (source UID, dest UID)."""
    dest = canonical(db, inbox, dest)
    if view.name in (INBOX, SENT, DRAFTS) and dest not in (TRASH, JUNK):
        raise ConflictError(f"{view.name} shows every message of its kind; COPY to {dest} labels it instead.")
    if dest in (SENT, DRAFTS):
        _refuse_into(dest)
    chosen = [e for e in view.entries if e.uid in set(uids)]
    for entry in chosen:
        if view.name not in (INBOX, SENT, DRAFTS, TRASH, JUNK):
            _relabel(db, inbox, entry.message_id, [], [view.name], actor)
        _arrive(db, inbox, dest, entry.message_id, actor)
    db.flush()
    after = {e.message_id: e.uid for e in sync(db, inbox, dest).entries}
    db.execute(delete(ImapUid).where(ImapUid.mailbox_id == view.mailbox_id,
                                     ImapUid.uid.in_([e.uid for e in chosen])))
    return [(e.uid, after[e.message_id]) for e in chosen if e.message_id in after]


def _refuse_into(dest: str) -> None:
    raise ConflictError(f"Messages cannot be copied into {dest}; APPEND a new one instead.")


# --- append, folders, content --------------------------------------------------------------------
def append(db: Session, inbox: Inbox, name: str, raw: bytes, flags: list[str]) -> tuple[int, int]:
    """APPEND to Sent or Drafts: a stored copy (never sent); (UIDVALIDITY, its UID)."""
    from appliance.services.mail import outbound  # outbound imports the mail services this module uses

    name = canonical(db, inbox, name)
    if name not in (SENT, DRAFTS):
        raise ConflictError("Only Sent and Drafts take APPENDed messages; mail arrives in INBOX over SMTP.")
    flags = check_flags(flags)
    status = "draft" if name == DRAFTS else "sent"
    message = outbound.store_outbound(db, inbox, raw, thread_id=None, now=utcnow(), status=status)
    message.is_read = SEEN in flags
    db.flush()
    view = sync(db, inbox, name)
    uid = next(e.uid for e in view.entries if e.message_id == message.id)
    stored = sorted(set(flags) - {SEEN})
    if stored:
        db.execute(update(ImapUid).where(ImapUid.mailbox_id == view.mailbox_id, ImapUid.uid == uid)
                   .values(flags=stored))
    return view.uid_validity, uid


def create_folder(db: Session, inbox: Inbox, name: str) -> None:
    """CREATE: a new message label of that name."""
    if _reserved(name):
        raise ConflictError(f"{name} exists already.")
    label_registry.create_label(db, inbox, name=name, type_="message")


def delete_folder(db: Session, inbox: Inbox, name: str) -> None:
    """DELETE: the label goes (from every message too); the special folders stay."""
    name = canonical(db, inbox, name)
    if name in SPECIAL_USE:
        raise ConflictError(f"{name} cannot be deleted.")
    label_id = db.scalar(select(Label.id).where(Label.inbox_id == inbox.id, Label.name == name))
    label_registry.delete_label(db, inbox, label_id)
    db.execute(delete(ImapMailbox).where(ImapMailbox.inbox_id == inbox.id, ImapMailbox.name == name))


def raw_of(db: Session, message_ids: list[str]) -> dict[str, bytes]:
    """The stored bytes of these messages (the caller's inbox owns them: they came from its view)."""
    rows = db.execute(select(MessageRaw.message_id, MessageRaw.raw).where(MessageRaw.message_id.in_(message_ids)))
    return {m: bytes(raw) for m, raw in rows}


def counts(view: View) -> tuple[int, int]:
    """(messages, unseen) of a folder view."""
    return len(view.entries), sum(1 for e in view.entries if SEEN not in e.flags)
