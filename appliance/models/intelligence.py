"""Rows of the intelligence area (issue 21): the activity timeline and the relationship graph.

Both are projections of the event table, written by one projector in the worker
(appliance/services/intelligence/activity.py) and never by the areas themselves.

- `activity_items`: one line of a contact's history, unique on inbox + address + type +
  resource, so an event read twice (a replay) adds nothing. Kept two years.
- `relationship_nodes`: per inbox and correspondent, counts and last times in each direction and
  a decayed message weight (`score` as of `score_at`, half-life 30 days); `rank` orders nodes by
  their strength now without recomputing it (relationships.py explains why that works).
- `relationship_edges`: two correspondents (`source` < `target`) and how many threads they share.
- `relationship_threads`: who has appeared in which thread, so each shared thread counts once.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class ActivityItem(Base):
    """One event in the history with one correspondent of one inbox."""

    __tablename__ = "activity_items"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # act_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower case
    type: Mapped[str] = mapped_column(String(64))  # message.sent, calendar_event.created, task.created, …
    resource_id: Mapped[str] = mapped_column(String(40), default="")
    seq: Mapped[int] = mapped_column(BigInteger)  # the event's seq: the timeline's order and cursor
    event_id: Mapped[str] = mapped_column(String(40))
    participants: Mapped[list] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # the API's `metadata`
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_activity_items_key", ActivityItem.inbox_id, ActivityItem.address, ActivityItem.type,
      ActivityItem.resource_id, unique=True)
Index("ix_activity_items_timeline", ActivityItem.inbox_id, ActivityItem.address, ActivityItem.seq)
Index("ix_activity_items_tenant_id", ActivityItem.tenant_id, ActivityItem.id)
Index("ix_activity_items_occurred_at", ActivityItem.occurred_at)


class RelationshipNode(Base):
    """One correspondent of one inbox: counts, last times, and the decayed weight of their mail."""

    __tablename__ = "relationship_nodes"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300), default="")
    inbound_count: Mapped[int] = mapped_column(Integer, default=0)
    outbound_count: Mapped[int] = mapped_column(Integer, default=0)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_outbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    score_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    rank: Mapped[float] = mapped_column(Float, default=0.0)


Index("ix_relationship_nodes_rank", RelationshipNode.inbox_id, RelationshipNode.rank)
Index("ix_relationship_nodes_tenant_id", RelationshipNode.tenant_id, RelationshipNode.inbox_id)


class RelationshipEdge(Base):
    """Two correspondents of one inbox who share threads (source < target)."""

    __tablename__ = "relationship_edges"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(320), primary_key=True)
    target: Mapped[str] = mapped_column(String(320), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    weight: Mapped[int] = mapped_column(Integer, default=0)  # threads shared


Index("ix_relationship_edges_target", RelationshipEdge.inbox_id, RelationshipEdge.target)
Index("ix_relationship_edges_tenant_id", RelationshipEdge.tenant_id, RelationshipEdge.inbox_id)


class RelationshipThread(Base):
    """A correspondent seen in a thread of the inbox (each shared thread counts once per pair)."""

    __tablename__ = "relationship_threads"
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))


Index("ix_relationship_threads_tenant_id", RelationshipThread.tenant_id, RelationshipThread.inbox_id)
