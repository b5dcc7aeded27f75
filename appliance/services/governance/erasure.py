"""Erasure (issue 23 point 5): every copy of a subject's data goes, area by area, from one registry.

A subject is a correspondent's address across a tenant's inboxes (`address`), a user of the
tenant (`user`: their account and what names them), or a whole tenant (`tenant`). Each area
declares, with `@area(name, *tables)`, the tables whose rows can hold a subject's data and a
function that finds and removes those rows for a `Subject`; `erase` runs every area in
registration order in one transaction. An area that lands later (files, workflows, intelligence)
adds one entry here; tests/integration/test_compliance_erasure.py fails while a table of the
metadata is neither declared by an area nor listed in `NO_SUBJECT_DATA` with the reason.

Rows are found by their tenant and by the subject's address anywhere in their text and JSON
columns (`mentions`), compared in lower case. Messages go with their raw bytes, attachments and
search rows (SQLite: the FTS5 index is then optimised, so no segment still holds the terms;
deleted pages are zeroed with `secure_delete`); rows that only refer to an erased row (events,
schedules, webhook deliveries) lose their payload; audit entries lose their `pii` (the only
change the append-only trigger allows), so the chain still verifies.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, null, or_, select, update
from sqlalchemy.orm import Session

from appliance.models import (AgentToken, Approval, AuditEntry, AutoReplyWindow, Broadcast, BroadcastRecipient,
                              CalendarEvent, Contact, ContactEmail, ContactShare, Event, IdempotencyRecord, Inbox,
                              Message, MessageRaw, MessageSearch, Attachment, OutboundQueue, OutboundRecipient, RateCounter,
                              Schedule, SystemMail, Task, Template, Tenant, Thread, ThreadNote, Unsubscribe, User,
                              UserSession, UserTotp, WaitlistEntry, WebhookDelivery)
from appliance.models.audit import BOX_CHAIN
from appliance.models.compliance import ComplianceExport
from appliance.services.workspace import blobs

SCOPES = ("user", "tenant", "address")
# SQLite's FTS5 indexes (and their shadow tables, named after them), kept in step with their
# table by triggers: erasing the rows unindexes them; `optimise_search` then drops the old segments.
FTS_INDEXES = {"messages_fts": "messages", "contacts_fts": "contacts"}


@dataclass
class Subject:
    """Whose data goes: `address` is the correspondent's (scope address) or the user's (scope user)."""

    scope: str
    tenant_id: str
    address: str | None = None
    user_id: str | None = None
    message_ids: set[str] = field(default_factory=set)  # erased by an earlier area; later ones follow refs
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Area:
    name: str
    tables: tuple[str, ...]
    erase: Callable[[Session, Subject], int]


AREAS: list[Area] = []

# Tables that hold no subject's data (or only rows removed through a foreign key of a declared
# table), with the reason: the coverage test reads this.
NO_SUBJECT_DATA: dict[str, str] = {
    "alembic_version": "the schema's revision",
    "domains": "the tenant's own domain names and their DNS checks",
    "dkim_keys": "the tenant's signing keys",
    "inboxes": "the tenant's own addresses (a tenant erasure removes them with the tenant)",
    "labels": "label names of the tenant",
    "calendars": "calendar names and feed key hashes",
    "event_counter": "one sequence number",
    "alert_cursors": "readers' positions in the event table",
    "alerts": "the tenant's webhook and task alert configuration",
    "mta_sts_policies": "remote domains' published policies",
    "process_heartbeats": "process liveness and metrics",
    "usage_counters": "counts per tenant and inbox",
    "usage_caps": "limits per tenant",
    "distribution_lists": "list addresses on the tenant's own domains",
    "distribution_list_members": "which of the tenant's inboxes a list reaches",
    "inbox_members": "users' access to inboxes (removed with the user through its foreign key)",
    "note_mentions": "which inbox a note mentions (removed with the note)",
    "thread_assignments": "which inbox a thread is assigned to (removed with the thread)",
    "contact_emails": "removed with their contact (foreign key)",
    "calendar_invitations": "removed with their message (foreign key)",
    "signup_tokens": "token hashes (removed with their waitlist entry)",
    "audit_heads": "each chain's last seq and hash",
    "audit_prunes": "a chain's prune mark, present only inside the pruning transaction",
    "retention_policies": "numbers of days",
    "compliance_deletions": "the erasure requests themselves: the subject is sealed and cleared once carried out",
    "message_raw": "removed with its message (the messages area)",
    "message_search": "removed with its message (the messages area)",
    "attachments": "removed with their message (the messages area)",
    "outbound_recipients": "removed with their queue row (the queued mail area)",
    "mail_import_items": "digests of imported Message-IDs, removed with their message (foreign key)",
    "imap_mailboxes": "IMAP folder names (the inbox's label names) and UID counters",
    "imap_uids": "removed with their message (foreign key)",
}


def area(name: str, *tables: str) -> Callable[[Callable[[Session, Subject], int]], Callable[[Session, Subject], int]]:
    """Register an area's eraser: the tables it covers and the function that empties them of a subject."""
    def decorate(fn: Callable[[Session, Subject], int]) -> Callable[[Session, Subject], int]:
        AREAS[:] = [a for a in AREAS if a.name != name] + [Area(name, tables, fn)]
        return fn
    return decorate


def covered_tables(listed: set[str] = frozenset()) -> set[str]:
    """Every table an area declares, every table known to hold no subject's data, and the FTS5
    indexes' shadow tables among `listed` (the database's own list)."""
    shadows = {t for t in listed for index in FTS_INDEXES if t == index or t.startswith(f"{index}_")}
    return {t for a in AREAS for t in a.tables} | set(NO_SUBJECT_DATA) | shadows


def erase(db: Session, subject: Subject) -> dict[str, int]:
    """Run every area for the subject in the caller's transaction; rows touched per area."""
    if db.get_bind().dialect.name == "sqlite":
        db.connection().exec_driver_sql("PRAGMA secure_delete=ON")  # freed pages are zeroed
    for entry in AREAS:
        subject.counts[entry.name] = int(entry.erase(db, subject) or 0)
    optimise_search(db)
    db.flush()
    return dict(subject.counts)


# --- finding rows ------------------------------------------------------------------------------
def mentions(address: str, *columns: Any) -> Any:
    """A condition: the address (lower case) appears in any of these text or JSON columns."""
    needle = address.lower()
    return or_(*(func.lower(cast(column, Text)).contains(needle, autoescape=True) for column in columns))


def _in_tenant(model: Any, subject: Subject) -> Any:
    return model.tenant_id == subject.tenant_id


def _where(model: Any, subject: Subject, *columns: Any) -> Any:
    """The tenant's rows (scope tenant) or the tenant's rows that mention the subject's address."""
    if subject.scope == "tenant":
        return _in_tenant(model, subject)
    return _in_tenant(model, subject) & mentions(subject.address, *columns)


def _delete(db: Session, model: Any, condition: Any) -> int:
    return db.execute(delete(model).where(condition).execution_options(synchronize_session=False)).rowcount


def _user_ids(db: Session, subject: Subject) -> list[str]:
    if subject.scope == "user":
        return [subject.user_id]
    if subject.scope == "tenant":
        return list(db.scalars(select(User.id).where(User.tenant_id == subject.tenant_id)))
    return []


def _user_emails(db: Session, subject: Subject) -> list[str]:
    if subject.scope == "tenant":
        return [e.lower() for e in db.scalars(select(User.email).where(User.tenant_id == subject.tenant_id))]
    return [subject.address.lower()] if subject.address else []


# --- the areas, in the order they run ----------------------------------------------------------
@area("messages", "messages", "threads")
def _messages(db: Session, subject: Subject) -> int:
    """Messages from, to or about the subject, with raw bytes, attachments and search rows."""
    if subject.scope == "user":
        return 0  # a user's mail belongs to the tenant's inboxes, not to the person
    condition = _in_tenant(Message, subject)
    if subject.scope == "address":
        condition &= or_(func.lower(Message.from_email) == subject.address.lower(),
                         mentions(subject.address, Message.to_addrs, Message.cc_addrs, Message.reply_to_addrs,
                                  Message.envelope_from, Message.envelope_to, Message.subject, Message.text_body,
                                  Message.html_body, Message.from_name))
    subject.message_ids.update(remove_message_ids(db, subject.tenant_id, condition))
    return len(subject.message_ids)


def remove_messages(db: Session, tenant_id: str, condition: Any) -> int:
    """Delete the tenant's messages matching condition, with every copy of them (retention uses it)."""
    return len(remove_message_ids(db, tenant_id, condition))


def remove_message_ids(db: Session, tenant_id: str, condition: Any) -> list[str]:
    """Delete the tenant's messages matching condition with raw bytes, attachments and search rows
    (queue rows and invitations go by foreign key); threads shrink; returns the ids."""
    from appliance.services.governance import usage

    rows = db.execute(select(Message.id, Message.thread_id, Message.inbox_id, Message.size)
                      .where(Message.tenant_id == tenant_id, condition)).all()
    ids = [row.id for row in rows]
    for chunk in _chunks(ids):
        blobs.drop_attachments(db, Attachment.message_id.in_(chunk))  # releases their blobs (issue 19)
        for model in (MessageSearch, MessageRaw):  # on SQLite a trigger unindexes the search row
            _delete(db, model, model.message_id.in_(chunk))
        _delete(db, Message, Message.id.in_(chunk))
    for row in rows:
        usage.record(db, tenant_id, usage.MAILBOX_BYTES, -row.size, inbox_id=row.inbox_id)
    _shrink_threads(db, {row.thread_id for row in rows})
    if ids:
        optimise_search(db, "messages_fts")
    return ids


def optimise_search(db: Session, *indexes: str) -> None:
    """SQLite: deleted FTS5 terms stay in old index segments until a merge; optimise rewrites each
    index whole, so no segment still holds an erased word. (PostgreSQL's tsvector lives in the row.)"""
    if db.get_bind().dialect.name != "sqlite":
        return
    for index in indexes or tuple(FTS_INDEXES):
        db.connection().exec_driver_sql(f"INSERT INTO {index}({index}) VALUES('optimize')")


def _shrink_threads(db: Session, thread_ids: Iterable[str]) -> None:
    for thread_id in thread_ids:
        left = db.execute(select(func.count(), func.max(Message.created_at)).where(Message.thread_id == thread_id)).one()
        if not left[0]:
            _delete(db, Thread, Thread.id == thread_id)
        else:
            db.execute(update(Thread).where(Thread.id == thread_id).values(message_count=left[0],
                                                                           last_message_at=left[1]))


def _chunks(ids: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


@area("queued mail", "outbound_queue", "system_mail")
def _queued_mail(db: Session, subject: Subject) -> int:
    """Queue rows to the subject (the erased messages' rows went with them by foreign key)."""
    if subject.scope == "tenant":
        return _delete(db, OutboundQueue, OutboundQueue.tenant_id == subject.tenant_id) + \
            _delete(db, SystemMail, func.lower(SystemMail.rcpt_to).in_(_user_emails(db, subject) or [""]))
    queues = select(OutboundRecipient.queue_id).where(func.lower(OutboundRecipient.recipient) == subject.address.lower())
    gone = _delete(db, OutboundQueue, (OutboundQueue.tenant_id == subject.tenant_id) & OutboundQueue.id.in_(queues))
    if subject.scope == "user":
        gone += _delete(db, SystemMail, func.lower(SystemMail.rcpt_to) == subject.address.lower())
    return gone


@area("contacts", "contacts", "contact_shares")
def _contacts(db: Session, subject: Subject) -> int:
    """Cards holding the address (their addresses go by foreign key), and shares of them."""
    if subject.scope == "tenant":
        return _delete(db, ContactShare, _in_tenant(ContactShare, subject)) + \
            _delete(db, Contact, _in_tenant(Contact, subject))
    cards = select(ContactEmail.contact_id).where(func.lower(ContactEmail.address) == subject.address.lower())
    shares = _delete(db, ContactShare, _where(ContactShare, subject, ContactShare.contact_address,
                                              ContactShare.parameters) | ContactShare.contact_id.in_(cards))
    return shares + _delete(db, Contact, _in_tenant(Contact, subject) & (
        Contact.id.in_(cards) | mentions(subject.address, Contact.search_text, Contact.notes)))


@area("calendar", "calendar_events")
def _calendar(db: Session, subject: Subject) -> int:
    """Events the subject organised; the subject is removed from other events' participants."""
    if subject.scope == "tenant":
        return _delete(db, CalendarEvent, _in_tenant(CalendarEvent, subject))
    gone = _delete(db, CalendarEvent, _in_tenant(CalendarEvent, subject) & (
        (func.lower(CalendarEvent.organizer) == subject.address.lower())
        | mentions(subject.address, CalendarEvent.title, CalendarEvent.description, CalendarEvent.location)))
    needle = subject.address.lower()
    for event in db.scalars(select(CalendarEvent).where(_where(CalendarEvent, subject, CalendarEvent.participants,
                                                                 CalendarEvent.overrides))):
        event.participants = [p for p in event.participants or [] if needle not in str(p).lower()]
        event.overrides = {k: v for k, v in (event.overrides or {}).items() if needle not in str(v).lower()}
        gone += 1
    return gone


@area("tasks and notes", "tasks", "thread_notes", "templates")
def _tasks_notes(db: Session, subject: Subject) -> int:
    """Tasks linked to an erased message or naming the subject; notes and templates naming them."""
    linked = Task.related_id.in_(list(subject.message_ids) or [""])
    return (_delete(db, Task, _where(Task, subject, Task.summary, Task.description) | (_in_tenant(Task, subject) & linked))
            + _delete(db, ThreadNote, _where(ThreadNote, subject, ThreadNote.body))
            + _delete(db, Template, _where(Template, subject, Template.subject, Template.text_body, Template.html_body)))


@area("broadcasts and replies", "broadcasts", "broadcast_recipients", "unsubscribes", "auto_reply_windows",
      "approvals")
def _broadcasts(db: Session, subject: Subject) -> int:
    """Broadcast recipients, unsubscribes, out-of-office windows and held actions naming the subject."""
    if subject.scope == "tenant":
        return sum(_delete(db, m, _in_tenant(m, subject)) for m in (Broadcast, Unsubscribe, AutoReplyWindow, Approval))
    mine = select(Broadcast.id).where(_in_tenant(Broadcast, subject))
    return (_delete(db, BroadcastRecipient, BroadcastRecipient.broadcast_id.in_(mine)
                    & (func.lower(BroadcastRecipient.address) == subject.address.lower()))
            + _delete(db, Unsubscribe, _where(Unsubscribe, subject, Unsubscribe.address))
            + _delete(db, AutoReplyWindow, _where(AutoReplyWindow, subject, AutoReplyWindow.sender))
            + _delete(db, Approval, _where(Approval, subject, Approval.summary, Approval.payload)
                      | (_in_tenant(Approval, subject) & Approval.resource_id.in_(list(subject.message_ids) or [""]))))


@area("event payloads", "events", "schedules", "webhook_deliveries")
def _event_payloads(db: Session, subject: Subject) -> int:
    """Events (and their scheduled and webhook copies) about the subject or an erased row keep
    their type and time; their payload is emptied."""
    refs = list(subject.message_ids) or [""]
    # The box's own events (the waitlist's, outside any tenant) that name an erased user.
    box = Event.tenant_id.is_(None) & or_(*(mentions(e, Event.payload) for e in _user_emails(db, subject) or ["\0"]))
    if subject.scope == "tenant":
        cleared = db.execute(update(Event).where(box).values(payload={"erased": True})
                             .execution_options(synchronize_session=False)).rowcount
        return (cleared + _delete(db, Event, Event.tenant_id == subject.tenant_id)
                + _delete(db, Schedule, _in_tenant(Schedule, subject))
                + _delete(db, WebhookDelivery, _in_tenant(WebhookDelivery, subject)))
    hit = _where(Event, subject, Event.payload) | ((Event.tenant_id == subject.tenant_id) & Event.resource_id.in_(refs))
    if subject.scope == "user":
        hit |= ((Event.tenant_id == subject.tenant_id) & (Event.actor_id == subject.user_id)) | box
    event_ids = list(db.scalars(select(Event.id).where(hit)))
    touched = db.execute(update(Event).where(Event.id.in_(event_ids or [""])).values(payload={"erased": True})
                         .execution_options(synchronize_session=False)).rowcount
    touched += _delete(db, Schedule, _where(Schedule, subject, Schedule.payload)
                       | (_in_tenant(Schedule, subject) & Schedule.resource_id.in_(refs)))
    touched += db.execute(update(WebhookDelivery).where(
        _where(WebhookDelivery, subject, WebhookDelivery.data, WebhookDelivery.error)
        | (_in_tenant(WebhookDelivery, subject) & WebhookDelivery.event_id.in_(event_ids or [""])))
        .values(data=null(), error=None).execution_options(synchronize_session=False)).rowcount
    return touched


@area("sessions and tokens", "user_sessions", "agent_tokens", "idempotency_records", "user_totp", "rate_counters")
def _access(db: Session, subject: Subject) -> int:
    """Sign-ins and second factors of the erased users; tokens labelled with the address; stored
    idempotent answers of the tenant's principals (sealed, so they cannot be searched: all go)."""
    users = _user_ids(db, subject)
    tokens = list(db.scalars(select(AgentToken.id).where(_where(AgentToken, subject, AgentToken.label))))
    principals = users + list(db.scalars(select(AgentToken.id).where(AgentToken.tenant_id == subject.tenant_id)))
    gone = _delete(db, UserSession, UserSession.user_id.in_(users or [""]))
    gone += _delete(db, UserTotp, UserTotp.user_id.in_(users or [""]))
    gone += _delete(db, IdempotencyRecord, IdempotencyRecord.principal.in_(principals or [""]))
    # Sign-in counters keyed by address (on SQLite they live in counters.db and expire within the hour).
    gone += _delete(db, RateCounter, or_(*(mentions(e, RateCounter.key) for e in _user_emails(db, subject) or ["\0"])))
    return gone + _delete(db, AgentToken, AgentToken.id.in_(tokens or [""]))


@area("audit personal data", "audit_entries")
def _audit_pii(db: Session, subject: Subject) -> int:
    """Clear `pii` (the one update the trigger allows) of entries by or about the subject."""
    chains = [subject.tenant_id]
    condition = AuditEntry.chain.in_(chains) & AuditEntry.pii.isnot(None)
    if subject.scope != "tenant":
        about = mentions(subject.address, AuditEntry.pii)
        condition &= (about | (AuditEntry.actor_id == subject.user_id)) if subject.user_id else about
    box = (AuditEntry.chain == BOX_CHAIN) & AuditEntry.pii.isnot(None) & or_(
        *(mentions(email, AuditEntry.pii) for email in _user_emails(db, subject) or [subject.address or "\0"]),
        AuditEntry.actor_id.in_(_user_ids(db, subject) or [""]))
    return db.execute(update(AuditEntry).where(condition | box).values(pii=null())
                      .execution_options(synchronize_session=False)).rowcount


@area("mail clients and imports", "app_passwords", "mail_imports")
def _mail_clients(db: Session, subject: Subject) -> int:
    """The erased users' app passwords (and any labelled with the address); imports that name the
    subject (their user name, or an error mentioning it), or all of the tenant's."""
    from appliance.models import AppPassword, MailImport

    users = _user_ids(db, subject)
    gone = _delete(db, AppPassword, _in_tenant(AppPassword, subject) & (
        AppPassword.user_id.in_(users or [""]) | (mentions(subject.address, AppPassword.label)
                                                  if subject.address else AppPassword.id == "")))
    imports = _in_tenant(MailImport, subject) if subject.scope == "tenant" else _where(
        MailImport, subject, MailImport.username, MailImport.error, MailImport.folders)
    return gone + _delete(db, MailImport, imports)


@area("sender rules and forwarding", "sender_rules", "inbox_forwarding")
def _sender_rules(db: Session, subject: Subject) -> int:
    """The address leaves every allow and block list; forwarding to it stops."""
    from appliance.models.senders import InboxForwarding, SenderRules

    if subject.scope == "tenant":
        return _delete(db, SenderRules, _in_tenant(SenderRules, subject)) + \
            _delete(db, InboxForwarding, _in_tenant(InboxForwarding, subject))
    address = subject.address.lower()
    changed = 0
    for rules in db.scalars(select(SenderRules).where(_where(SenderRules, subject, SenderRules.inbound_patterns,
                                                                 SenderRules.outbound_patterns))):
        rules.inbound_patterns = [p for p in rules.inbound_patterns or [] if p.lower() != address]
        rules.outbound_patterns = [p for p in rules.outbound_patterns or [] if p.lower() != address]
        changed += 1
    return changed + _delete(db, InboxForwarding, _in_tenant(InboxForwarding, subject)
                             & (func.lower(InboxForwarding.default_address) == address))


@area("files", "files", "file_versions", "file_rows", "folders", "blobs", "blob_chunks")
def _files(db: Session, subject: Subject) -> int:
    """A tenant's files go with it; for a person, spreadsheet rows that name them (a file's bytes
    cannot be searched: the owner reviews files by hand, docs/compliance.md)."""
    from appliance.models.files import File, FileRow, Folder

    if subject.scope == "tenant":
        gone = _delete(db, File, _in_tenant(File, subject)) + _delete(db, Folder, _in_tenant(Folder, subject))
        return gone + blobs.drop_tenant(db, subject.tenant_id)
    files = select(File.id).where(_in_tenant(File, subject))
    return _delete(db, FileRow, FileRow.file_id.in_(files) & mentions(subject.address, FileRow.data))


@area("sequences and phishing model", "sequences", "sequence_enrollments", "phishing_models")
def _learned(db: Session, subject: Subject) -> int:
    """Enrollments go with their contact (foreign key); a tenant's sequences and its learned
    phishing word counts go with the tenant. Those counts are pooled over every marked message
    and say nothing of who sent which word, so a correspondent's erasure leaves them (a known
    limit, docs/compliance.md)."""
    from appliance.models import PhishingModel
    from appliance.models.senders import Sequence

    if subject.scope != "tenant":
        return 0
    return _delete(db, Sequence, _in_tenant(Sequence, subject)) + \
        _delete(db, PhishingModel, PhishingModel.tenant_id == subject.tenant_id)


@area("activity and relationships", "activity_items", "relationship_nodes", "relationship_edges",
      "relationship_threads")
def _activity(db: Session, subject: Subject) -> int:
    """The subject's timeline items (theirs, or naming them among the participants) and their
    place in the relationship graph: their node, every edge to or from them, their thread rows."""
    from appliance.models.intelligence import ActivityItem, RelationshipEdge, RelationshipNode, RelationshipThread

    if subject.scope == "tenant":
        return sum(_delete(db, model, _in_tenant(model, subject))
                   for model in (ActivityItem, RelationshipEdge, RelationshipThread, RelationshipNode))
    address = subject.address.lower()
    gone = _delete(db, ActivityItem, _in_tenant(ActivityItem, subject) & (
        (func.lower(ActivityItem.address) == address)
        | mentions(address, ActivityItem.participants, ActivityItem.summary, ActivityItem.details)))
    gone += _delete(db, RelationshipEdge, _in_tenant(RelationshipEdge, subject) & (
        (func.lower(RelationshipEdge.source) == address) | (func.lower(RelationshipEdge.target) == address)))
    gone += _delete(db, RelationshipThread, _in_tenant(RelationshipThread, subject)
                    & (func.lower(RelationshipThread.address) == address))
    return gone + _delete(db, RelationshipNode, _in_tenant(RelationshipNode, subject)
                          & (func.lower(RelationshipNode.address) == address))


@area("workflows", "workflows", "workflow_runs", "workflow_deliveries")
def _workflows(db: Session, subject: Subject) -> int:
    """Workflows whose conditions or actions name the subject (e.g. "from_address eq alice@…",
    "forward to alice@…"), with their runs; queued webhook payloads and run records that mention
    the subject; all of a tenant's."""
    from appliance.models.workflows import Workflow, WorkflowDelivery, WorkflowRun

    if subject.scope == "tenant":
        return _delete(db, Workflow, _in_tenant(Workflow, subject))
    gone = _delete(db, WorkflowDelivery, _where(WorkflowDelivery, subject, WorkflowDelivery.data))
    gone += _delete(db, WorkflowRun, _where(WorkflowRun, subject, WorkflowRun.actions))
    return gone + _delete(db, Workflow, _where(Workflow, subject, Workflow.conditions, Workflow.writes,
                                                Workflow.name))


@area("exports", "compliance_exports")
def _exports(db: Session, subject: Subject) -> int:
    """Exports waiting for download that hold the subject's data (all of the tenant's: a zip
    cannot be searched)."""
    return _delete(db, ComplianceExport, _in_tenant(ComplianceExport, subject))


@area("accounts", "users", "waitlist_entries", "tenants")
def _accounts(db: Session, subject: Subject) -> int:
    """The user (scope user), or the tenant with every row left under it (scope tenant)."""
    emails = _user_emails(db, subject) if subject.scope != "address" else []
    gone = _delete(db, WaitlistEntry, func.lower(WaitlistEntry.email).in_(emails or [""]))
    if subject.scope == "user":
        return gone + _delete(db, User, (User.id == subject.user_id) & (User.tenant_id == subject.tenant_id))
    if subject.scope == "tenant":
        _delete(db, AgentToken, AgentToken.tenant_id == subject.tenant_id)
        _delete(db, Inbox, Inbox.tenant_id == subject.tenant_id)  # before its domains (RESTRICT)
        gone += _delete(db, Tenant, Tenant.id == subject.tenant_id)
    return gone
