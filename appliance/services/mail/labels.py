"""The label registry of an inbox (contract section 9): names to ids, colours and types.

Messages and contacts keep label *names* (JSON lists on their rows); this module makes sure every
name used has a row here. `ensure` is what every area calls when it sets labels: an unknown name
becomes a label of the kind asked for (`message` from messages, `contact` from contacts), and a
name whose label is typed for the other kind is refused. The labels API (list, create, rename,
colour, delete) is built on these rows by the labels area.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.ids import new_id
from appliance.models import Label

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
