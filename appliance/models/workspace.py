"""Shared rows of the workspace areas (issues 16, 17, 18, 27): labels and the schedule.

`labels` is the registry of an inbox's labels (contract section 9): a message's `labels` stay
names (a JSON list on the message, so existing clients keep working) and a contact's likewise;
this table gives each name an id, a colour and a type (`message`/`contact`/`any`), unique per
inbox. `schedules` holds every future event with a due time (anniversaries, reminders, due
tasks): the worker's scheduler emits the event when it is due (appliance/services/automation/
schedule.py), and alerts with an `offset` fire before it.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

LABEL_TYPES = ("message", "contact", "any")


class Label(Base):
    """One label of one inbox (`lbl_`)."""

    __tablename__ = "labels"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    color: Mapped[str | None] = mapped_column(String(7), nullable=True)  # #rrggbb
    type: Mapped[str] = mapped_column(String(16), default="any")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_labels_tenant_id", Label.tenant_id, Label.id)
Index("uq_labels_inbox_name", Label.inbox_id, Label.name, unique=True)


class Schedule(Base):
    """An event due at a time (`sch_`): emitted by the worker's scheduler at `due_at`.

    `key` names the thing scheduled (e.g. `anniversary:<contact_id>:birthday`), unique, so an
    area re-plans by key without duplicates; `source` picks the function that computes the next
    due time after a firing (yearly anniversaries, recurring events), None for one-shot rows.
    """

    __tablename__ = "schedules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str | None] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=True)
    key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    fired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_schedules_key", Schedule.key, unique=True)
Index("ix_schedules_tenant_id", Schedule.tenant_id, Schedule.id)
Index("ix_schedules_due", Schedule.fired_at, Schedule.due_at)
