"""Team collaboration rows (issue 16, contract section 10): templates, thread notes with their
mentions, and thread assignments.

Templates belong to the tenant (every inbox of the team uses them). A note belongs to one thread
and expires 90 days after it was written (`expires_at`); it lives only here, never in a message
row, so no path that builds outgoing mail can reach it. A mention row gives a mentioned inbox a
pending agenda item. An assignment hands one thread to another inbox of the same tenant: while
it is not revoked, that inbox's agents may read the thread and reply in it.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Template(Base):
    """A reply template of the tenant (`tpl_`) with `{placeholder}` variables."""

    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_templates_tenant_id", Template.tenant_id, Template.id)


class ThreadNote(Base):
    """An internal note on a thread (`not_`): seen by the team, never sent."""

    __tablename__ = "thread_notes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    author_inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    author_id: Mapped[str] = mapped_column(String(80))  # the principal that wrote it (user or token id)
    body: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list] = mapped_column(JSON, default=list)  # the addresses as given
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_thread_notes_tenant_id", ThreadNote.tenant_id, ThreadNote.id)
Index("ix_thread_notes_thread", ThreadNote.thread_id, ThreadNote.created_at)
Index("ix_thread_notes_expires", ThreadNote.expires_at)


class NoteMention(Base):
    """One inbox mentioned by one note: a pending agenda item of that inbox."""

    __tablename__ = "note_mentions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    note_id: Mapped[str] = mapped_column(ForeignKey("thread_notes.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))


Index("ix_note_mentions_tenant_id", NoteMention.tenant_id, NoteMention.id)
Index("ix_note_mentions_inbox", NoteMention.inbox_id)
Index("ix_note_mentions_note", NoteMention.note_id)


class ThreadAssignment(Base):
    """A thread handed to an inbox of the same tenant (`asg_`); revoked_at ends it."""

    __tablename__ = "thread_assignments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    assignee_inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    assigned_by: Mapped[str] = mapped_column(String(80))
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


Index("ix_thread_assignments_tenant_id", ThreadAssignment.tenant_id, ThreadAssignment.id)
Index("ix_thread_assignments_thread", ThreadAssignment.thread_id, ThreadAssignment.revoked_at)
Index("ix_thread_assignments_assignee", ThreadAssignment.assignee_inbox_id, ThreadAssignment.revoked_at)
