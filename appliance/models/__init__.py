"""SQLAlchemy 2.0 typed models. No I/O beyond the database."""
from appliance.models.approvals import APPROVAL_STATUSES, Approval
from appliance.models.base import Base, UTCDateTime
from appliance.models.identity import (MANAGER_ROLES, ROLES, AgentToken, SignupToken, Tenant, User, UserSession,
                                       WaitlistEntry)
from appliance.models.infra import Event, EventCounter, IdempotencyRecord, RateCounter
from appliance.models.mail import (Attachment, DkimKey, Domain, Inbox, Message, MessageRaw,
                                   MessageSearch, SystemMail, Thread)
from appliance.models.outbound import MtaStsPolicy, OutboundQueue, OutboundRecipient
from appliance.models.webui import UserTotp
from appliance.models.operations import ProcessHeartbeat
from appliance.models.members import InboxMember
from appliance.models.alerts import Alert, AlertCursor, Task, WebhookDelivery
from appliance.models.workspace import LABEL_TYPES, Label, Schedule
from appliance.models.audit import BOX_CHAIN, AuditEntry, AuditHead
from appliance.models.autoreply import AutoReplyWindow
from appliance.models.lists import DistributionList, DistributionListMember
from appliance.models.team import NoteMention, Template, ThreadAssignment, ThreadNote
from appliance.models.contacts import Contact, ContactEmail, ContactShare
from appliance.models.calendar import Calendar, CalendarEvent, CalendarInvitation
from appliance.models.broadcast import Broadcast, BroadcastRecipient, Unsubscribe
from appliance.models.governance import UsageCap, UsageCounter
from appliance.models.imap import ImapMailbox, ImapUid
from appliance.models.app_passwords import AppPassword
from appliance.models.imports import MailImport, MailImportItem
from appliance.models.compliance import AuditPrune, ComplianceDeletion, ComplianceExport, RetentionPolicy
from appliance.models.phishing import PhishingModel
from appliance.models.senders import InboxForwarding, SenderRules, Sequence, SequenceEnrollment
from appliance.models.files import Blob, BlobChunk, File, FileRow, FileVersion, Folder
from appliance.models.workflows import Workflow, WorkflowDelivery, WorkflowRun
from appliance.models.intelligence import ActivityItem, RelationshipEdge, RelationshipNode, RelationshipThread

__all__ = [
    "AppPassword", "MailImport", "MailImportItem",
    "Base", "UTCDateTime", "MANAGER_ROLES", "ROLES", "AgentToken", "SignupToken", "Tenant", "User", "UserSession",
    "WaitlistEntry", "Event", "EventCounter", "IdempotencyRecord", "RateCounter", "DkimKey", "Domain", "Inbox", "Message",
    "SystemMail", "Attachment", "MessageRaw", "MessageSearch", "Thread",
    "MtaStsPolicy", "OutboundQueue", "OutboundRecipient",
    "UserTotp",
    "ProcessHeartbeat",
    "Approval", "APPROVAL_STATUSES",
    "InboxMember",
    "Alert", "AlertCursor", "Task", "WebhookDelivery",
    "LABEL_TYPES", "Label", "Schedule",
    "BOX_CHAIN", "AuditEntry", "AuditHead",
    "AutoReplyWindow",
    "DistributionList", "DistributionListMember",
    "NoteMention", "Template", "ThreadAssignment", "ThreadNote",
    "Contact", "ContactEmail", "ContactShare",
    "Calendar", "CalendarEvent", "CalendarInvitation",
    "UsageCap", "UsageCounter",
    "Broadcast", "BroadcastRecipient", "Unsubscribe",
    "ImapMailbox", "ImapUid",
    "AuditPrune", "ComplianceDeletion", "ComplianceExport", "RetentionPolicy",
    "PhishingModel",
    "InboxForwarding", "SenderRules", "Sequence", "SequenceEnrollment",
    "Blob", "BlobChunk", "File", "FileRow", "FileVersion", "Folder",
    "Workflow", "WorkflowDelivery", "WorkflowRun",
    "ActivityItem", "RelationshipEdge", "RelationshipNode", "RelationshipThread",
]
