"""The label registry of an inbox (contract section 9): names to ids, colours and types.

Messages and contacts keep label *names* (JSON lists on their rows); this module makes sure every
name used has a row here. `ensure` is what every area calls when it sets labels: an unknown name
becomes a label of the kind asked for (`message` from messages, `contact` from contacts), and a
name whose label is typed for the other kind is refused. The labels API (list, create, rename,
colour, delete) is built on these rows below: a rename rewrites the name on the inbox's messages
(and contacts), a delete removes it from them, and `set_message_labels` is the one way a message's
labels change (creating unknown names, emitting `label.applied`/`label.removed`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ConflictError, ValidationError
from appliance.ids import has_prefix, new_id
from appliance.models import LABEL_TYPES, Base, Inbox, Label, Message
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso

KINDS = ("message", "contact")


def ensure(db: Session, *, tenant_id: str, inbox_id: str, names: Iterable[str], kind: str) -> list[Label]:
    """The labels of `names` in this inbox, created (type `kind`) where missing, in the order given.

    A name already typed for the other kind → 400 naming it (a `message` label cannot tag a
    contact). Runs in the caller's transaction; a concurrent creator of the same name wins the
    unique index and this call's transaction fails, as any conflicting write does.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        return []
    existing = {label.name: label for label in db.scalars(
        select(Label).where(Label.inbox_id == inbox_id, Label.name.in_(wanted)))}
    out = []
    for name in wanted:
        label = existing.get(name)
        if label is None:
            label = Label(id=new_id("lbl"), tenant_id=tenant_id, inbox_id=inbox_id, name=name, type=kind,
                          created_at=utcnow())
            db.add(label)
        elif label.type not in ("any", kind):
            raise ValidationError(f"labels: {name!r} is a {label.type} label and cannot be used on a {kind}",
                                  field="labels", code="label_type_mismatch",
                                  fix=f"Use a label of type {kind!r} or 'any', or change this label's type.")
        out.append(label)
    db.flush()
    return out


# --- the labels API (contract section 9) -------------------------------------------------------
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_NOT_FOUND = "No such label in this inbox."


def _check_color(color: str | None) -> str | None:
    if color is not None and not COLOR.match(color):
        raise ValidationError("color must be #rrggbb", field="color", fix="Send a colour like #1f6feb.")
    return color.lower() if color else None


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("name must be 1 to 100 characters", field="name")
    return name


def _taken(db: Session, inbox_id: str, name: str, but: str | None = None) -> None:
    other = db.scalar(select(Label.id).where(Label.inbox_id == inbox_id, Label.name == name))
    if other is not None and other != but:
        raise ConflictError(f"This inbox already has a label named {name!r}.", field="name",
                            fix="Pick another name, or PATCH the existing label.")


def create_label(db: Session, inbox: Inbox, *, name: str, color: str | None = None, type_: str = "any",
                 actor: Any = None) -> Label:
    """A new label of the inbox; a name already used in the inbox → 409."""
    name, color = _check_name(name), _check_color(color)
    if type_ not in LABEL_TYPES:
        raise ValidationError(f"type must be one of {', '.join(LABEL_TYPES)}", field="type")
    _taken(db, inbox.id, name)
    label = Label(id=new_id("lbl"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, name=name, color=color,
                  type=type_, created_at=utcnow())
    db.add(label)
    db.flush()
    events.emit(db, "label.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=label.id,
                actor=actor, payload={"name": name, "type": type_})
    return label


def list_labels(db: Session, inbox: Inbox, *, limit: int, cursor: str | None = None,
                type_: str | None = None) -> tuple[list[Label], str | None]:
    """One page of the inbox's labels in id (creation) order, and the cursor of the next."""
    query = tenancy.owned(select(Label).where(Label.inbox_id == inbox.id), Label, inbox.tenant_id)
    if cursor:
        query = query.where(Label.id > cursor)
    if type_:
        query = query.where(Label.type == type_)
    rows = list(db.scalars(query.order_by(Label.id).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def get_label(db: Session, inbox: Inbox, label_id: str) -> Label:
    """A label of this inbox; 404 for any other (another inbox's or tenant's)."""
    return tenancy.get_owned(db, Label, label_id, inbox.tenant_id, where=(Label.inbox_id == inbox.id,),
                             message=_NOT_FOUND, fix="List the inbox's labels at GET /v1/labels/.")


def update_label(db: Session, inbox: Inbox, label_id: str, *, name: str | None = None, color: str | None = None,
                 type_: str | None = None, actor: Any = None) -> Label:
    """Rename (the inbox's messages and contacts follow), recolour or retype a label."""
    label = get_label(db, inbox, label_id)
    changes: dict = {}
    new = _check_name(name) if name is not None else label.name
    if new != label.name:
        _taken(db, inbox.id, new, but=label.id)
        _rewrite(db, inbox, label.name, new)
        changes["name"] = {"from": label.name, "to": new}
        label.name = new
    if color is not None and _check_color(color) != label.color:
        label.color = changes["color"] = _check_color(color)
    if type_ is not None and type_ != label.type:
        if type_ not in LABEL_TYPES:
            raise ValidationError(f"type must be one of {', '.join(LABEL_TYPES)}", field="type")
        _refuse_retype(db, inbox, label.name, type_)
        label.type = changes["type"] = type_
    if changes:
        db.flush()
        events.emit(db, "label.updated", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=label.id,
                    actor=actor, payload=changes)
    return label


def _refuse_retype(db: Session, inbox: Inbox, name: str, type_: str) -> None:
    """A label still on messages cannot become contact-only (nor one on contacts message-only)."""
    contacts = _contacts_table()
    on = {"message": db.scalar(select(Message.id).where(Message.inbox_id == inbox.id,
                                                        has_name(db, "messages", name)).limit(1)) is not None,
          "contact": contacts is not None and db.scalar(select(contacts.c.id).where(
              contacts.c.inbox_id == inbox.id, has_name(db, "contacts", name)).limit(1)) is not None}
    for kind in ("message", "contact"):
        if on[kind] and type_ not in ("any", kind):
            raise ConflictError(f"The label {name!r} is still on {kind}s, so it cannot become a {type_} label.",
                                field="type", fix=f"Remove it from those {kind}s first, or keep type 'any'.")


def delete_label(db: Session, inbox: Inbox, label_id: str, actor: Any = None) -> None:
    """Delete a label and remove its name from every message and contact of the inbox."""
    label = get_label(db, inbox, label_id)
    removed = _rewrite(db, inbox, label.name, None)
    events.emit(db, "label.deleted", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=label.id,
                actor=actor, payload={"name": label.name, "messages": removed})
    db.delete(label)
    db.flush()


# --- names on messages (and contacts) ----------------------------------------------------------
def has_name(db: Session, table: str, name: str):  # noqa: ANN201 - a SQL condition
    """`table.labels` (a JSON list of names) holds name, on either backend."""
    if db.get_bind().dialect.name == "sqlite":
        return text(f"EXISTS (SELECT 1 FROM json_each({table}.labels) WHERE json_each.value = :lbl_name)"
                    ).bindparams(lbl_name=name)
    return text(f"CAST({table}.labels AS jsonb) @> CAST(:lbl_names AS jsonb)").bindparams(
        lbl_names=json.dumps([name]))


def _rewrite(db: Session, inbox: Inbox, old: str, new: str | None) -> int:
    """Replace (or, for None, drop) the name `old` on the inbox's messages and contacts."""
    def renamed(names: list) -> list:
        out = [new if n == old else n for n in names or [] if new is not None or n != old]
        return list(dict.fromkeys(out))
    rows = db.execute(select(Message.id, Message.labels).where(Message.inbox_id == inbox.id,
                                                               has_name(db, "messages", old))).all()
    for message_id, names in rows:
        db.execute(update(Message).where(Message.id == message_id).values(labels=renamed(names)))
    contacts = _contacts_table()
    if contacts is not None:  # the contacts area (issue 17) keeps names the same way
        for row_id, names in db.execute(select(contacts.c.id, contacts.c.labels).where(
                contacts.c.inbox_id == inbox.id, has_name(db, "contacts", old))).all():
            db.execute(update(contacts).where(contacts.c.id == row_id).values(labels=renamed(names)))
    return len(rows)


def _contacts_table():  # noqa: ANN202
    """The contacts table when the contacts area is installed (with per-inbox label names)."""
    table = Base.metadata.tables.get("contacts")
    return table if table is not None and {"id", "inbox_id", "labels"} <= set(table.c.keys()) else None


def counts(db: Session, inbox: Inbox) -> dict[str, tuple[int, int]]:
    """name -> (message_count, contact_count) over the inbox, in one query per table."""
    out: dict[str, list[int]] = {}
    tables = [("messages", 0)] + ([("contacts", 1)] if _contacts_table() is not None else [])
    for table, slot in tables:
        for name, count in db.execute(_count_query(db, table), {"inbox": inbox.id}).all():
            out.setdefault(name, [0, 0])[slot] = count
    return {name: (m, c) for name, (m, c) in out.items()}


def _count_query(db: Session, table: str):  # noqa: ANN202
    if db.get_bind().dialect.name == "sqlite":
        return text(f"SELECT j.value, count(*) FROM {table}, json_each({table}.labels) AS j "
                    f"WHERE {table}.inbox_id = :inbox GROUP BY j.value")
    return text(f"SELECT j.value, count(*) FROM {table}, jsonb_array_elements_text(CAST({table}.labels AS jsonb)) "
                f"AS j(value) WHERE {table}.inbox_id = :inbox GROUP BY j.value")


def label_to_dict(label: Label, counted: dict[str, tuple[int, int]]) -> dict:
    message_count, contact_count = counted.get(label.name, (0, 0))
    return {"label_id": label.id, "inbox_id": label.inbox_id, "name": label.name, "color": label.color,
            "type": label.type, "created_at": iso(label.created_at), "message_count": message_count,
            "contact_count": contact_count}


def filter_name(db: Session, inbox: Inbox, value: str) -> str:
    """A `label=` filter's value as a name: a `lbl_` id of the inbox is its label's name."""
    if has_prefix(value, "lbl"):
        name = db.scalar(select(Label.name).where(Label.id == value, Label.inbox_id == inbox.id))
        if name is not None:
            return name
    return value


def set_message_labels(db: Session, inbox: Inbox, message: Message, names: list[str], actor: Any = None) -> bool:
    """Replace a message's labels: unknown names become `message` labels, and each name added or
    removed emits `label.applied` / `label.removed`. True when the list changed."""
    before = list(message.labels or [])
    if names == before:
        return False
    known = set(db.scalars(select(Label.name).where(Label.inbox_id == inbox.id, Label.name.in_(names))))
    made = ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=names, kind="message")
    by_name = {label.name: label for label in made}
    for label in made:
        if label.name not in known:
            events.emit(db, "label.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=label.id,
                        actor=actor, payload={"name": label.name, "type": label.type})
    message.labels = names
    for name in [n for n in names if n not in before]:
        _applied(db, "label.applied", inbox, message, name, by_name[name].id, actor)
    gone = [n for n in before if n not in names]
    ids = dict(db.execute(select(Label.name, Label.id).where(Label.inbox_id == inbox.id, Label.name.in_(gone))).all()
               ) if gone else {}
    for name in gone:
        _applied(db, "label.removed", inbox, message, name, ids.get(name), actor)
    return True


def _applied(db: Session, type_: str, inbox: Inbox, message: Message, name: str, label_id: str | None,
             actor: Any) -> None:
    events.emit(db, type_, tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=message.id, actor=actor,
                payload={"label": name, "label_id": label_id, "thread_id": message.thread_id})
