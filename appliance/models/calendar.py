"""Calendars and their events (contract section 12, issue 18).

`calendars` (`cld_`): every inbox has `default` and `tasks` (made lazily), more by API; a
calendar's ICS feed is reached with a secret key whose SHA-256 is stored (`feed_key_hash`).
`calendar_events` (`cal_`): one row per series (or single event). Times are stored in UTC with
the IANA zone they were given in (`time_zone`), so a weekly 09:00 Europe/Berlin event stays at
09:00 local across DST. A recurring event keeps its RRULE, its cancelled occurrences (EXDATE,
UTC ISO strings) and its changed occurrences (`overrides`: RECURRENCE-ID in UTC ISO -> changed
fields), expanded with icalendar + recurring-ical-events. `calendar_invitations` links a
received iMIP message to the event it made or changed (the message's `invitation`).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Calendar(Base):
    """One calendar of one inbox (`cld_`)."""

    __tablename__ = "calendars"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    color: Mapped[str | None] = mapped_column(String(7), nullable=True)
    feed_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_calendars_tenant_id", Calendar.tenant_id, Calendar.id)
Index("uq_calendars_inbox_name", Calendar.inbox_id, Calendar.name, unique=True)
Index("uq_calendars_feed_key_hash", Calendar.feed_key_hash, unique=True)


class CalendarEvent(Base):
    """An event or a recurring series (`cal_`)."""

    __tablename__ = "calendar_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    ical_uid: Mapped[str] = mapped_column(String(255))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(500), default="")
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    recurrence: Mapped[str | None] = mapped_column(String(500), nullable=True)
    exdates: Mapped[list] = mapped_column(JSON, default=list)
    overrides: Mapped[dict] = mapped_column(JSON, default=dict)
    organizer: Mapped[str] = mapped_column(String(320), default="")
    participants: Mapped[list] = mapped_column(JSON, default=list)
    reminders: Mapped[list] = mapped_column(JSON, default=list)
    origin: Mapped[str] = mapped_column(String(16), default="local")  # local, or invitation (received)
    source_message_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_calendar_events_tenant_id", CalendarEvent.tenant_id, CalendarEvent.id)
Index("ix_calendar_events_inbox_start", CalendarEvent.inbox_id, CalendarEvent.start)
Index("uq_calendar_events_inbox_uid", CalendarEvent.inbox_id, CalendarEvent.ical_uid, unique=True)


class CalendarInvitation(Base):
    """A received iMIP message and the event it made or changed (the message's `invitation`)."""

    __tablename__ = "calendar_invitations"
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    event_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    method: Mapped[str] = mapped_column(String(16))
    organizer: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_calendar_invitations_tenant_id", CalendarInvitation.tenant_id, CalendarInvitation.message_id)
