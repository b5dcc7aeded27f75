"""Thread assignment (contract section 10): a thread of one inbox handed to another inbox of the
same tenant. While the assignment stands, the assignee inbox (its agents, and people who may use
it) reads the thread and replies in it, as the thread's own inbox; revoking it (or assigning the
thread to someone else) ends that at once, because every access asks `thread_inbox` again.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Inbox, Message, Thread, ThreadAssignment
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso

_NO_THREAD = "No such thread in this inbox."


def current(db: Session, thread_id: str) -> ThreadAssignment | None:
    """The thread's standing assignment, if any."""
    return db.scalar(select(ThreadAssignment).where(ThreadAssignment.thread_id == thread_id,
                                                    ThreadAssignment.revoked_at.is_(None)))


def thread_inbox(db: Session, inbox: Inbox, thread_id: str) -> Inbox:
    """The inbox that holds the thread, when `inbox` may act in it: its own thread, or one assigned
    to it now; 404 otherwise (another inbox's or tenant's thread alike)."""
    thread = tenancy.get_owned(db, Thread, thread_id, inbox.tenant_id, message=_NO_THREAD,
                               fix="List threads at GET /v1/messages/threads/.")
    if thread.inbox_id == inbox.id:
        return inbox
    standing = current(db, thread.id)
    if standing is None or standing.assignee_inbox_id != inbox.id:
        raise NotFoundError(_NO_THREAD, fix="List threads at GET /v1/messages/threads/.")
    return tenancy.get_owned(db, Inbox, thread.inbox_id, inbox.tenant_id, message=_NO_THREAD)


def reply_inbox(db: Session, inbox: Inbox, message_id: str | None) -> Inbox:
    """The inbox a reply to message_id is sent from, or the message is read in: the caller's own,
    or, for a message of a thread assigned to the caller's inbox, that thread's inbox (a reply
    joins the thread). An unknown message gives the caller's own inbox (its lookup answers 404)."""
    if message_id is None:
        return inbox
    message = tenancy.find_owned(db, Message, inbox.tenant_id, Message.id == message_id)
    if message is None or message.inbox_id == inbox.id:
        return inbox  # the send's own lookup answers for an unknown message
    try:
        return thread_inbox(db, inbox, message.thread_id)
    except NotFoundError:
        return inbox


def assign(db: Session, inbox: Inbox, thread_id: str, assignee_inbox_id: str, actor: Any = None) -> ThreadAssignment:
    """Assign the inbox's thread to another inbox of the tenant (replacing a standing assignment)."""
    thread = tenancy.get_owned(db, Thread, thread_id, inbox.tenant_id, where=(Thread.inbox_id == inbox.id,),
                               message=_NO_THREAD)
    assignee = tenancy.find_owned(db, Inbox, inbox.tenant_id, Inbox.id == assignee_inbox_id,
                                  Inbox.status != "deleted")
    if assignee is None:  # unknown and another tenant's inbox alike: nothing to probe
        raise ValidationError("assignee_inbox_id is not an inbox of your team", field="assignee_inbox_id",
                              fix="Assign to one of your tenant's inboxes (GET /v1/inboxes/).")
    now = utcnow()
    standing = current(db, thread.id)
    if standing is not None:
        if standing.assignee_inbox_id == assignee.id:
            return standing
        standing.revoked_at = now
        db.flush()  # one standing assignment per thread
    row = ThreadAssignment(id=new_id("asg"), tenant_id=inbox.tenant_id, thread_id=thread.id,
                           assignee_inbox_id=assignee.id, assigned_by=str(actor or ""), assigned_at=now)
    db.add(row)
    db.flush()
    events.emit(db, "thread.assigned", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=thread.id,
                actor=actor, payload={"assignee_inbox_id": assignee.id, "subject": thread.subject[:200]})
    return row


def unassign(db: Session, inbox: Inbox, thread_id: str, actor: Any = None) -> None:
    """Revoke the thread's assignment: the assignee no longer reads or replies in it."""
    thread = tenancy.get_owned(db, Thread, thread_id, inbox.tenant_id, where=(Thread.inbox_id == inbox.id,),
                               message=_NO_THREAD)
    standing = current(db, thread.id)
    if standing is None:
        raise NotFoundError("The thread is not assigned.")
    standing.revoked_at = utcnow()
    events.emit(db, "thread.unassigned", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=thread.id,
                actor=actor, payload={"assignee_inbox_id": standing.assignee_inbox_id})
    db.flush()


def assignment_to_dict(row: ThreadAssignment) -> dict:
    return {"thread_id": row.thread_id, "assignee_inbox_id": row.assignee_inbox_id, "assigned_at": iso(row.assigned_at)}


def assigned_to(db: Session, inbox_id: str) -> list[tuple[ThreadAssignment, Thread]]:
    """The standing assignments of threads to this inbox, oldest first."""
    return list(db.execute(select(ThreadAssignment, Thread).join(Thread, Thread.id == ThreadAssignment.thread_id)
                           .where(ThreadAssignment.assignee_inbox_id == inbox_id,
                                  ThreadAssignment.revoked_at.is_(None))
                           .order_by(ThreadAssignment.assigned_at, ThreadAssignment.id)).all())


message_inbox = reply_inbox  # reading a message of an assigned thread (GET message, raw, attachment)
