"""The one registry of event types: what each is, its category, whether only owners and admins
see it in the catalogue, and its alert configuration (`offset` for scheduled types, later).

`events.emit` refuses a type that is not here (at emit time, so a typo fails its first test, not
a subscriber's filter months later), the web UI's and the API's type filters accept exactly these,
and the catalogue endpoints of issue 15 (`GET /v1/events/types/`, `/reference/`) render them.
A test walks the code's `emit` calls and fails when one names a type missing from this table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EventType:
    """One registered type: `domain.verified` is in category `domains`."""

    type: str
    category: str
    description: str
    admin: bool = False  # only owners and admins see it in the catalogue (no inbox's agent ever gets it)
    config: dict[str, Any] = field(default_factory=dict)  # alert options it takes, e.g. {"offset": True}
    # The units an alert's `offset` may use (scheduled types, e.g. calendar reminders); () takes none.
    offset_units: tuple[str, ...] = ()


CATEGORIES = {
    "messages": "Mail received, sent, delivered, bounced, changed or deleted in an inbox.",
    "domains": "Verification and DKIM key changes of a tenant's domains.",
    "inboxes": "Inboxes created and deleted.",
    "tokens": "Agent tokens issued, paused, resumed, rotated, narrowed and revoked.",
    "app_passwords": "App passwords (IMAP and SMTP submission sign-in) created and revoked.",
    "approvals": "Held agent actions requested, approved, rejected or expired.",
    "users": "Accounts of the tenant: sign-up, roles, status, second factor.",
    "access": "The appliance's waitlist: access requests approved or rejected (operators).",
    "alerts": "Alerts (webhooks and task deliveries) created, changed, disabled or tested.",
    "settings": "Tenant and inbox settings changed (signature, out-of-office, time zone, consent).",
    "distribution_lists": "Distribution lists created, deleted, and their members changed (issue 16).",
    "contacts": "Contacts created, changed or deleted, cards shared between inboxes, and their yearly anniversaries.",
    "tasks": "An inbox's tasks created, changed, completed, deleted, or due.",
    "labels": "An inbox's labels created, renamed or deleted, and applied to or removed from messages.",
    "team": "Team work on threads: notes, assignments, and the tenant's reply templates.",
    "calendar": "Calendar events created, changed (reminders too) or cancelled, by the API or by invitations.",
    "usage": "Usage caps: a cap crossed one of its alert thresholds (issue 22).",
    "compliance": "Data exports, erasure requests and retention runs of the tenant (issue 23).",
    "sender_rules": "An inbox's sender rules and forwarding changed, and mail it forwarded (issue 20).",
    "sequences": "Follow-up sequences: changed, contacts enrolled, steps due and sent, enrollments ended (issue 20).",
    "files": "An inbox's files created, renamed, moved, given a new version or rows, or deleted; folders created.",
    "workflows": "Workflows created, changed or deleted, and each run's outcome (issue 20).",
}
_SCHEDULED = {"offset": True}  # alerts may take these `offset` before they are due (docs/events.md)
_OFFSET_UNITS = ("minutes", "hours", "days")

_TYPES = (
    EventType("message.received", "messages", "A message arrived in the inbox (SMTP or local delivery)."),
    EventType("message.imported", "messages",
              "A message was copied into the inbox from another mail server (an import); not new mail."),
    EventType("import.completed", "messages", "An import from another mail server finished (or failed).",
              admin=True),
    EventType("message.sent", "messages", "The inbox sent a message; it is queued for delivery."),
    EventType("message.delivered", "messages", "A remote server accepted a sent message for some recipients."),
    EventType("message.deferred", "messages", "Delivery failed for now; the worker retries later."),
    EventType("message.bounced", "messages",
              "Delivery failed for good (or was cancelled); a bounce is in the inbox."),
    EventType("message.updated", "messages", "A message's read state or labels changed."),
    EventType("message.deleted", "messages", "A message was deleted."),
    EventType("message.flags_changed", "messages", "An IMAP client changed a message's per-folder flags (\\Flagged, "
              "\\Answered, \\Deleted, \\Draft, keywords; \\Seen is message.updated). Payload: folder, flags."),
    # issue 21: the worker's builtin enrichment, and people's phishing marks that teach the tenant's model
    EventType("message.enriched", "messages",
              "A received message got its phishing verdict and next step (payload: verdict, score, next_step)."),
    EventType("message.marked", "messages", "A person marked a received message as phishing or not (mark: "
                                            "phishing/safe); the tenant's model learned it."),
    EventType("domain.verified", "domains", "A domain's DNS records checked out: it receives and sends mail.", admin=True),
    EventType("domain.dkim_rotation_started", "domains", "A new DKIM key was made; publish it before it signs.",
              admin=True),
    EventType("domain.dkim_rotated", "domains", "The new DKIM key signs now; the old one retires.", admin=True),
    EventType("domain.claim_lapsed", "domains",
              "Another tenant verified a domain name this tenant had claimed: the claim lapsed.", admin=True),
    EventType("inbox.created", "inboxes", "An inbox was created."),
    EventType("inbox.deleted", "inboxes", "An inbox was deleted."),
    EventType("inbox.members_changed", "inboxes", "The members granted the inbox changed.", admin=True),
    EventType("distribution_list.created", "distribution_lists", "A distribution list was created.", admin=True),
    EventType("distribution_list.deleted", "distribution_lists", "A distribution list was deleted.", admin=True),
    EventType("distribution_list.members_changed", "distribution_lists",
              "Inboxes were added to or removed from a distribution list.", admin=True),
    EventType("token.created", "tokens", "An agent token was issued for the inbox."),
    EventType("token.paused", "tokens", "An agent token was paused: its calls are refused until resumed."),
    EventType("token.resumed", "tokens", "A paused agent token works again."),
    EventType("token.rotated", "tokens", "An agent token got a new secret; the old one stopped working."),
    EventType("token.narrowed", "tokens", "An agent token lost some of its scopes."),
    EventType("token.revoked", "tokens", "An agent token was revoked for good."),
    EventType("app_password.created", "app_passwords", "A person created an app password for a mail client.",
              admin=True),
    EventType("app_password.revoked", "app_passwords", "An app password was revoked: its client is refused.",
              admin=True),
    EventType("approval.requested", "approvals", "An agent's action is held until an owner or admin decides."),
    EventType("approval.approved", "approvals", "A held action was approved and carried out."),
    EventType("approval.rejected", "approvals", "A held action was rejected and discarded."),
    EventType("approval.expired", "approvals", "A held action waited too long and was discarded."),
    EventType("user.signed_up", "users", "A user signed up and owns a new tenant.", admin=True),
    EventType("user.role_changed", "users", "A member's role changed.", admin=True),
    EventType("user.disabled", "users", "A member was disabled: their sign-ins end.", admin=True),
    EventType("user.enabled", "users", "A disabled member may sign in again.", admin=True),
    EventType("user.totp_enabled", "users", "A user turned on two-factor sign-in.", admin=True),
    EventType("user.totp_disabled", "users", "A user turned off two-factor sign-in.", admin=True),
    EventType("waitlist.approved", "access", "An access request was approved; a sign-up link was mailed.",
              admin=True),
    EventType("waitlist.rejected", "access", "An access request was rejected.", admin=True),
    EventType("alert.created", "alerts", "An alert was created for the inbox."),
    EventType("alert.updated", "alerts", "An alert's events, delivery or settings changed, or it was enabled."),
    EventType("alert.deleted", "alerts", "An alert was deleted; its pending deliveries are dropped."),
    EventType("alert.disabled", "alerts",
              "An alert was disabled: by hand, by a 410 from its target, or after 5 days of failures."),
    EventType("alert.secret_rotated", "alerts", "An alert's signing secret was replaced; the old one signs 24 h more."),
    EventType("workflow.created", "workflows", "A workflow was created for the inbox."),
    EventType("workflow.updated", "workflows", "A workflow's trigger, conditions, actions or state changed."),
    EventType("workflow.deleted", "workflows", "A workflow was deleted; its queued webhook actions are dropped."),
    EventType("workflow.run_completed", "workflows",
              "A workflow's conditions matched an event and its actions ran (each action's outcome in the run)."),
    EventType("workflow.run_failed", "workflows", "A workflow matched an event but one of its actions failed."),
    EventType("webhook.test", "alerts", "A test delivery was requested for one alert (sent to that alert only)."),
    EventType("settings.updated", "settings",
              "The tenant's or an inbox's settings changed; the payload names the keys (never their values)."),
    EventType("task.created", "tasks", "A task was created in the inbox."),
    EventType("task.updated", "tasks", "A task's summary, description, due time, priority, status or link changed."),
    EventType("task.completed", "tasks", "A task was marked completed."),
    EventType("task.deleted", "tasks", "A task was deleted."),
    EventType("task.due", "tasks", "An open task reached its due time."),
    # issue 16: labels and team collaboration
    EventType("label.created", "labels", "A label was created in the inbox (by name on a message, or explicitly)."),
    EventType("label.updated", "labels", "A label was renamed (its messages follow) or its colour or type changed."),
    EventType("label.deleted", "labels", "A label was deleted and removed from every message and contact."),
    EventType("label.applied", "labels", "A label was applied to a message."),
    EventType("label.removed", "labels", "A label was removed from a message."),
    EventType("broadcast.queued", "labels", "A broadcast to a label's contacts was queued, one message each "
              "(after its approval, when held); skipped addresses are counted."),
    EventType("broadcast.completed", "labels", "Every message of a broadcast was delivered or bounced."),
    EventType("note.created", "team", "A note was written on a thread (never sent); mentioned inboxes are named."),
    EventType("note.deleted", "team", "A note on a thread was deleted by its author."),
    EventType("thread.assigned", "team", "A thread was assigned to an inbox of the team, which may now read "
                                         "and reply in it."),
    EventType("thread.unassigned", "team", "A thread's assignment was revoked."),
    EventType("template.created", "team", "A reply template was created for the tenant.", admin=True),
    EventType("template.updated", "team", "A reply template was changed.", admin=True),
    EventType("template.deleted", "team", "A reply template was deleted.", admin=True),
    # issue 17: contacts; the anniversary types fire yearly at 09:00 in the inbox's zone (schedule.py)
    EventType("contact.created", "contacts", "A contact was created (by hand, by import, by a share or by sending to it)."),
    EventType("contact.updated", "contacts", "A contact's names, addresses, phones, labels or dates changed."),
    EventType("contact.deleted", "contacts", "A contact was deleted."),
    EventType("contact.share_received", "contacts",
              "Another inbox of the tenant offered a card to this inbox, or asked it for one."),
    EventType("contact.birthday", "contacts", "A contact's birthday (09:00 in the inbox's zone).",
              config={"offset": True}, offset_units=("minutes", "hours", "days")),
    EventType("contact.anniversary", "contacts", "A contact's anniversary or another yearly date of theirs.",
              config={"offset": True}, offset_units=("minutes", "hours", "days")),
    EventType("contact.nameday", "contacts", "A contact's name day (09:00 in the inbox's zone).",
              config={"offset": True}, offset_units=("minutes", "hours", "days")),
    # issue 18: calendar events (reminders fire event.updated with `reminder` in the payload)
    EventType("event.created", "calendar", "A calendar event was created (by the API or a received invitation).",
              config=_SCHEDULED, offset_units=_OFFSET_UNITS),
    EventType("event.updated", "calendar", "A calendar event changed, a participant answered, or a reminder is due.",
              config=_SCHEDULED, offset_units=_OFFSET_UNITS),
    EventType("event.cancelled", "calendar", "A calendar event (or one occurrence) was cancelled or deleted."),
    # issue 23: compliance (no payload names an erased subject)
    EventType("compliance.export_requested", "compliance", "A data export was requested; the worker builds it.",
              admin=True),
    EventType("compliance.export_ready", "compliance", "A data export is ready; its download link lasts 24 hours.",
              admin=True),
    EventType("compliance.export_failed", "compliance", "A data export could not be built.", admin=True),
    EventType("compliance.deletion_scheduled", "compliance",
              "An erasure was requested; it is carried out after a 7-day grace period unless cancelled.", admin=True),
    EventType("compliance.deletion_cancelled", "compliance", "An erasure was cancelled within its grace period.",
              admin=True),
    EventType("compliance.deletion_due", "compliance", "An erasure's grace period ended; the worker carries it out.",
              admin=True),
    EventType("compliance.deletion_completed", "compliance", "An erasure was carried out: every copy is gone.",
              admin=True),
    EventType("compliance.retention_due", "compliance", "The daily retention run of the tenant is due.", admin=True),
    EventType("compliance.retention_applied", "compliance",
              "The retention policy removed old messages, events or audit entries (counts in the payload).", admin=True),
    # issue 20 points 3-5: sender rules, forwarding, sequences
    EventType("sender_rules.updated", "sender_rules", "An inbox's inbound or outbound sender rules changed."),
    EventType("forwarding.updated", "sender_rules", "An inbox's forwarding address or switches changed."),
    EventType("message.forwarded", "sender_rules", "A received message was forwarded (SRS envelope, ARC seal)."),
    EventType("sequence.created", "sequences", "A follow-up sequence was created."),
    EventType("sequence.updated", "sequences", "A sequence's name, steps or exit rule changed."),
    EventType("sequence.deleted", "sequences", "A sequence was deleted; its active enrollments were cancelled."),
    EventType("sequence.enrolled", "sequences", "A contact was enrolled in a sequence."),
    EventType("sequence.step_due", "sequences", "A step of an enrollment is due (the worker sends it)."),
    EventType("sequence.step_sent", "sequences", "A step of an enrollment was sent in the contact's thread."),
    EventType("sequence.ended", "sequences", "An enrollment ended: completed, replied, bounced, unsubscribed "
              "or cancelled."),
    # issue 19: files (a new version, a rename, a move and added rows are all file.updated)
    EventType("file.created", "files", "A file was created in the inbox (upload, text, base64 or a promoted attachment)."),
    EventType("file.updated", "files", "A file was renamed or moved, got a new version, or a spreadsheet got rows."),
    EventType("file.deleted", "files", "A file was deleted with its versions; its links stop working."),
    EventType("folder.created", "files", "A folder was created in the inbox's files."),
    EventType("cap.reached", "usage", "A send, mailbox, files or spend cap crossed an alert threshold "
              "(80%, 95%, 100% by default); once per cap, threshold and period.", admin=True),
)

REGISTRY: dict[str, EventType] = {t.type: t for t in _TYPES}
EVENT_TYPES: tuple[str, ...] = tuple(REGISTRY)
assert all(t.category in CATEGORIES for t in _TYPES), "every type's category is described"


class UnknownEventType(LookupError):
    """Code emitted a type that is not registered: a programming error, never a client's."""


def lookup(type_: str) -> EventType:
    """The registered type; UnknownEventType if there is none."""
    try:
        return REGISTRY[type_]
    except KeyError:
        raise UnknownEventType(f"event type {type_!r} is not registered in appliance/services/automation/event_types.py") \
            from None
