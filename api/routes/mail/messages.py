"""Contract section 5: reading mail (lists and search, messages, raw bytes, attachments, threads),
marking read, labelling and deleting."""
from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.routing import BaseConverter

from api.framework import Ctx, IsoDateTime, PlainText, Reply, StrictModel, endpoint, scope
from appliance.httputil import content_disposition
from appliance.services.governance import approvals
from appliance.services.identity.auth import inbox_for
from appliance.services.mail import compose, messages, outbound
from appliance.services.team import assignment, templates

bp = Blueprint("messages", __name__)


class MessageIdConverter(BaseConverter):
    """A message id segment: anything but `threads`, which is the thread list. Excluded in the
    pattern itself, so /v1/messages/threads/ neither reaches a message view nor advertises the
    message methods in its Allow header."""

    regex = r"(?!(?:threads|broadcast)\Z)[^/]+"
    part_isolating = True  # matched against its own path segment, where \Z is the segment's end


# Recorded before the routes below, so the converter exists when their rules are compiled.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("message_id", MessageIdConverter))
READ, WRITE, SEND = scope("email:read"), scope("email:write"), scope("email:send")
InboxId = Field(None, max_length=40, description="Session tokens: the inbox. Agent tokens: omit it.")
LabelName = Annotated[PlainText, Field(min_length=1, max_length=100)]


# --- requests -------------------------------------------------------------------------------
class InboxQuery(StrictModel):
    inbox_id: str | None = InboxId


class MessageQuery(StrictModel):
    inbox_id: str | None = InboxId
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200)
    after: IsoDateTime | None = Field(None, description="Only messages that arrived after this time.")
    before: IsoDateTime | None = Field(None, description="Only messages that arrived before this time.")
    thread_id: str | None = Field(None, max_length=40)
    direction: Literal["inbound", "outbound"] | None = None
    label: str | None = Field(None, max_length=100)
    unread: bool | None = None
    q: str | None = Field(None, max_length=500, description="Words to find in subject, body and addresses.")


class ThreadQuery(StrictModel):
    inbox_id: str | None = InboxId
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200)
    q: str | None = Field(None, max_length=500, description="Threads with a message holding these words.")


class Person(StrictModel):
    email: PlainText = Field(min_length=3, max_length=320, description="name@example.com")
    name: PlainText = Field("", max_length=200, description="The display name.")


class ReplyAddress(StrictModel):
    email: PlainText = Field(min_length=3, max_length=320)


class InlineAttachment(StrictModel):
    filename: PlainText = Field(min_length=1, max_length=255)
    content_type: PlainText = Field("application/octet-stream", max_length=255)
    content_base64: str = Field(description="The file's bytes, standard base64.")


class SendBody(StrictModel):
    inbox_id: str | None = Field(None, max_length=40, description="Session tokens: the sending inbox. "
                                                                 "Agent tokens: omit it.")
    to: list[Person] = Field([], max_length=compose.MAX_RECIPIENTS)
    cc: list[Person] = Field([], max_length=compose.MAX_RECIPIENTS)
    bcc: list[Person] = Field([], max_length=compose.MAX_RECIPIENTS, description="Never shown in the sent headers.")
    reply_to: list[ReplyAddress] = Field([], max_length=10)
    subject: PlainText | None = Field(None, max_length=998)
    text_body: str | None = Field(None, json_schema_extra={"x-multiline": True})
    html_body: str | None = Field(None, json_schema_extra={"x-multiline": True},
                                  description="Without text_body, a text/plain alternative is made from the "
                                              "sanitised HTML (links kept as \"label (URL)\").")
    attachments: list[InlineAttachment] = Field([], max_length=compose.MAX_ATTACHMENTS)
    reply_to_message_id: str | None = Field(
        None, max_length=40, description="Reply to this message: recipients (unless to is given), the Re: subject "
                                         "(unless subject is given) and the threading headers come from it.")
    template_id: str | None = Field(None, max_length=40, description="A template of the tenant: its subject and "
                                    "bodies, filled with template_values, stand in for those not given here.")
    template_values: dict[str, str | int | float | None] = Field(
        default_factory=dict, max_length=200, description="A value for every variable of template_id (HTML-escaped "
                                                          "in its html_body).")


class MessageUpdate(StrictModel):
    is_read: pydantic.StrictBool | None = None
    labels: list[LabelName] | None = Field(None, max_length=messages.MAX_LABELS)


# --- answers --------------------------------------------------------------------------------
class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MessageAddress(_Answer):
    email: str
    name: str


class MessageHeaders(_Answer):
    message_id: str = Field(alias="Message-ID")
    in_reply_to: str = Field(alias="In-Reply-To")
    references: str = Field(alias="References")
    date: str = Field(alias="Date")


class MessageAttachment(_Answer):
    attachment_id: str
    filename: str
    content_type: str
    size: int
    disposition: Literal["attachment", "inline"]
    content_id: str


class MessageAuthentication(_Answer):
    spf: str
    dkim: str
    dmarc: str
    dmarc_aligned: bool


class MessageDelivery(_Answer):
    recipient: str
    status: Literal["queued", "deferred", "delivered", "bounced", "failed"]
    attempts: int
    last_attempt_at: str | None
    next_attempt_at: str | None
    smtp_reply: str | None


class PhishingReason(_Answer):
    code: str
    detail: str


class MessagePhishing(_Answer):
    verdict: Literal["safe", "suspicious", "phishing"]
    score: float
    reasons: list[PhishingReason]


class MessageNextStep(_Answer):
    action: Literal["reply", "schedule", "pay", "review", "unsubscribe", "none"]
    summary: str
    due: str | None


class MessageEnrichment(_Answer):
    phishing: MessagePhishing | None
    next_step: MessageNextStep | None
    mark: Literal["phishing", "safe"] | None = Field(description="A person's mark (POST …/phishing/), if any.")
    model: str | None


class MessageSummary(_Answer):
    message_id: str
    thread_id: str
    inbox_id: str
    direction: Literal["inbound", "outbound"]
    from_: MessageAddress = Field(alias="from")
    to: list[MessageAddress]
    cc: list[MessageAddress]
    subject: str
    snippet: str
    has_attachments: bool
    is_read: bool
    labels: list[str]
    received_at: str | None
    sent_at: str | None
    status: str


class MessageFull(MessageSummary):
    reply_to: list[MessageAddress]
    text_body: str
    html_body: str = Field(description="Sanitised for display; GET …/raw/ keeps the original.")
    headers: MessageHeaders
    attachments: list[MessageAttachment]
    authentication: MessageAuthentication | None = Field(description="Inbound messages only.")
    delivery: list[MessageDelivery] | None = Field(description="Outbound messages only.")
    size: int
    parse_error: str | None
    invitation: dict | None = Field(None, description="A received calendar invitation (iMIP): event_id, method "
                                                      "(REQUEST/REPLY/CANCEL) and organizer.")
    enrichment: MessageEnrichment | None = Field(None, description="Received mail, once the worker judged it "
                                                 "(issue 21): phishing verdict and reasons, next step.")


class SendAnswer(_Answer):
    message_id: str
    thread_id: str
    status: Literal["queued"]


class HeldAnswer(_Answer):
    """202: the token's sends need approval; the message is held (GET /v1/approvals/{id}/)."""

    queued: Literal[True]
    approval_id: str


class MessageList(_Answer):
    results: list[MessageSummary]
    cursor: str | None


class ThreadSummary(_Answer):
    thread_id: str
    inbox_id: str
    subject: str
    participants: list[str]
    labels: list[str]
    message_count: int
    unread_count: int
    last_message_at: str
    snippet: str


class ThreadList(_Answer):
    results: list[ThreadSummary]
    cursor: str | None


class ThreadFull(_Answer):
    thread_id: str
    inbox_id: str
    subject: str
    participants: list[str]
    labels: list[str]
    message_count: int
    last_message_at: str
    messages: list[MessageFull]


# --- views ----------------------------------------------------------------------------------
@endpoint(bp, "/v1/messages/", "GET", auth=READ, tag="messages", query=MessageQuery, response=MessageList,
          summary="The inbox's messages, newest first; filters and full-text search q")
def list_messages(ctx: Ctx) -> dict:
    q = ctx.query
    inbox = inbox_for(ctx.db, ctx.principal, q.inbox_id)
    page, cursor = messages.list_messages(ctx.db, inbox, limit=q.limit, cursor=q.cursor, after=q.after,
                                          before=q.before, thread_id=q.thread_id, direction=q.direction,
                                          label=q.label, unread=q.unread, q=q.q)
    zone = messages.zone_of(inbox)
    return {"results": [messages.message_to_summary(m, zone) for m in page], "cursor": cursor}


def _send_limit(settings) -> int:  # noqa: ANN001
    """Room for a message at the size limit as base64 in JSON, plus the rest of the body."""
    return settings.max_message_bytes * 4 // 3 + 1024 * 1024


@endpoint(bp, "/v1/messages/", "POST", auth=SEND, tag="messages", body=SendBody, response=SendAnswer, status=201,
          max_body=_send_limit, holds=True, answers={202: HeldAnswer}, late_writes=True,
          summary="Send a message (new or a reply): DKIM-signed, queued, delivered by the worker; "
                  "202 when the token's sends need approval (held until approved)")
def send_message(ctx: Ctx) -> Reply:
    body = ctx.body
    inbox = inbox_for(ctx.db, ctx.principal, body.inbox_id)
    if body.template_id is not None:  # issue 16: the rendered template fills the fields not given
        filled = templates.render_for_send(ctx.db, ctx.principal, body.template_id, body.template_values)
        body = body.model_copy(update={k: v for k, v in filled.items() if getattr(body, k) is None})
    inbox = assignment.reply_inbox(ctx.db, inbox, body.reply_to_message_id)  # a reply in a thread assigned to it
    request = compose.SendRequest(
        to=[compose.Recipient(p.email, p.name) for p in body.to], cc=[compose.Recipient(p.email, p.name) for p in body.cc],
        bcc=[compose.Recipient(p.email, p.name) for p in body.bcc],
        reply_to=[compose.Recipient(p.email) for p in body.reply_to], subject=body.subject,
        text_body=body.text_body, html_body=body.html_body,
        attachments=[a.model_dump() for a in body.attachments], reply_to_message_id=body.reply_to_message_id)
    message = outbound.send(ctx.db, ctx.settings, ctx.principal, inbox, request)
    if message.status == "held":
        return Reply(202, {"queued": True, "approval_id": approvals.approval_of(ctx.db, message.id).id})
    return Reply(201, {"message_id": message.id, "thread_id": message.thread_id, "status": "queued"})


@endpoint(bp, "/v1/messages/threads/", "GET", auth=READ, tag="messages", query=ThreadQuery,
          response=ThreadList, summary="The inbox's threads, most recent activity first")
def list_threads(ctx: Ctx) -> dict:
    q = ctx.query
    inbox = inbox_for(ctx.db, ctx.principal, q.inbox_id)
    page, cursor = messages.list_threads(ctx.db, inbox, limit=q.limit, cursor=q.cursor, q=q.q)
    members = messages.thread_messages(ctx.db, [t.id for t in page])
    zone = messages.zone_of(inbox)
    return {"results": [messages.thread_to_summary(t, members[t.id], zone) for t in page], "cursor": cursor}


@endpoint(bp, "/v1/messages/threads/<thread_id>/", "GET", auth=READ, tag="messages", query=InboxQuery,
          response=ThreadFull, summary="A thread with its full messages, oldest first")
def get_thread(ctx: Ctx, thread_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    inbox = assignment.thread_inbox(ctx.db, inbox, thread_id)  # its own, or a thread assigned to it (issue 16)
    thread, members = messages.get_thread(ctx.db, inbox, thread_id)
    return messages.thread_to_full(ctx.db, thread, members, messages.zone_of(inbox))


@endpoint(bp, "/v1/messages/<message_id:message_id>/", "GET", auth=READ, tag="messages", query=InboxQuery,
          response=MessageFull, summary="One message: bodies, headers, attachments, authentication")
def get_message(ctx: Ctx, message_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    inbox = assignment.message_inbox(ctx.db, inbox, message_id)  # or a thread assigned to it (issue 16)
    message = messages.get_message(ctx.db, inbox, message_id)
    return messages.render_full(ctx.db, [message], messages.zone_of(inbox))[0]


@endpoint(bp, "/v1/messages/<message_id:message_id>/", "PATCH", auth=WRITE, tag="messages", query=InboxQuery,
          body=MessageUpdate, response=MessageFull, summary="Mark a message read or unread, or set its labels")
def update_message(ctx: Ctx, message_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    message = messages.update_message(ctx.db, inbox, message_id, is_read=ctx.body.is_read,
                                      labels=ctx.body.labels, actor=ctx.principal.id)
    return messages.render_full(ctx.db, [message], messages.zone_of(inbox))[0]


@endpoint(bp, "/v1/messages/<message_id:message_id>/", "DELETE", auth=WRITE, tag="messages", query=InboxQuery,
          status=204, summary="Delete a message with its raw copy, attachments and search entries")
def delete_message(ctx: Ctx, message_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    messages.delete_message(ctx.db, inbox, message_id, actor=ctx.principal.id)
    return Reply(204)


@endpoint(bp, "/v1/messages/<message_id:message_id>/raw/", "GET", auth=READ, tag="messages", query=InboxQuery,
          content_type="message/rfc822", summary="The message's stored RFC 5322 bytes")
def get_raw(ctx: Ctx, message_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    inbox = assignment.message_inbox(ctx.db, inbox, message_id)  # or a thread assigned to it (issue 16)
    raw = messages.get_raw(ctx.db, inbox, message_id)
    return Reply(200, Response(raw, mimetype="message/rfc822", headers={
        "Content-Disposition": content_disposition(f"{message_id}.eml"), "X-Content-Type-Options": "nosniff"}))


@endpoint(bp, "/v1/messages/<message_id:message_id>/attachments/<attachment_id>/", "GET", auth=READ, tag="messages",
          query=InboxQuery, content_type="*/*",
          summary="An attachment's decoded bytes, with its content type, as a download")
def get_attachment(ctx: Ctx, message_id: str, attachment_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    inbox = assignment.message_inbox(ctx.db, inbox, message_id)  # or a thread assigned to it (issue 16)
    attachment = messages.get_attachment(ctx.db, inbox, message_id, attachment_id)
    return Reply(200, Response(messages.attachment_bytes(ctx.db, attachment), headers={
        "Content-Type": messages.safe_content_type(attachment.content_type),
        "Content-Disposition": content_disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff",
        # Opened directly anyway (an HTML or SVG attachment), it runs nothing and loads nothing.
        "Content-Security-Policy": "sandbox; default-src 'none'"}))
