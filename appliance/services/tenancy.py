"""Tenancy in one place: every service loads a tenant's rows through these helpers.

A row belongs to a tenant through its own `tenant_id` column or, for a child row without one
(an attachment, a DKIM key, a queue recipient), through the foreign key to a parent that has it.
`tenant_clause` writes that condition from the models' metadata, so a query built with
`owned(...)` or a row loaded with `get_owned(...)` cannot see another tenant's rows: a lookup
across tenants answers 404 (never 403, so ids cannot be probed) by construction.
"""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, exists, false, inspect, select
from sqlalchemy.orm import Session

from appliance.errors import NotFoundError
from appliance.models import Base

T = TypeVar("T")


def _model_of_table(table_name: str) -> type | None:
    for mapper in Base.registry.mappers:
        if mapper.local_table.name == table_name:
            return mapper.class_
    return None


def tenant_clause(model: type, tenant_id: str):  # noqa: ANN201 - a SQL condition
    """The condition "this row of model belongs to tenant_id", directly or through its parent."""
    if "tenant_id" in model.__table__.c:
        return model.tenant_id == tenant_id
    for fk in sorted(model.__table__.foreign_keys, key=lambda f: f.parent.name):
        parent = _model_of_table(fk.column.table.name)
        if parent is not None and "tenant_id" in parent.__table__.c:
            # A correlated EXISTS on the parent's primary key: one index lookup per row.
            return exists().where(fk.column == fk.parent, parent.tenant_id == tenant_id)
    raise TypeError(f"{model.__name__} has no tenant_id and no parent with one")


def owned(query: Select, model: type, tenant_id: str | None) -> Select:
    """The query limited to tenant_id's rows of model (nothing at all for no tenant)."""
    if not tenant_id:
        return query.where(false())
    return query.where(tenant_clause(model, tenant_id))


def get_owned(db: Session, model: type[T], row_id: Any, tenant_id: str | None, *, where: tuple = (),
              message: str = "No such resource.", fix: str | None = None, field: str | None = None,
              for_update: bool = False) -> T:
    """The tenant's row of model with this primary key (and the extra conditions); 404 otherwise."""
    if not isinstance(row_id, str) or not row_id:
        raise NotFoundError(message, fix=fix, field=field)
    key = inspect(model).primary_key[0]
    query = owned(select(model).where(key == row_id, *where), model, tenant_id)
    if for_update:
        query = query.with_for_update()
    row = db.scalar(query)
    if row is None:
        raise NotFoundError(message, fix=fix, field=field)
    return row


def find_owned(db: Session, model: type[T], tenant_id: str | None, *where: Any) -> T | None:
    """The first of the tenant's rows of model matching the conditions, or None."""
    return db.scalars(owned(select(model).where(*where), model, tenant_id)).first()
