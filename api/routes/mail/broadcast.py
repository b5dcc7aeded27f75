"""Contract section 9: broadcast to the contacts of a label, and its status (issue 16 point 2)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.governance import approvals
from appliance.services.identity.auth import inbox_for
from appliance.services.mail import broadcast

bp = Blueprint("broadcast", __name__)
SEND, READ = scope("email:send"), scope("email:read")


class BroadcastBody(StrictModel):
    label_id: str = Field(min_length=1, max_length=40, description="A label of type contact or any.")
    subject: PlainText | None = Field(None, max_length=998)
    text_body: str | None = Field(None, max_length=1_000_000, json_schema_extra={"x-multiline": True})
    html_body: str | None = Field(None, max_length=2_000_000, json_schema_extra={"x-multiline": True})
    template_id: str | None = Field(None, max_length=40)
    template_values: dict[str, Any] = Field(default_factory=dict, description="Values for every contact; "
                                            "{full_name}, {company} and {email} come from each contact.")


class BroadcastQuery(StrictModel):
    pass


class BroadcastAnswer(StrictModel):
    queued: bool
    broadcast_id: str
    recipients: int
    approval_id: str | None = None


class SkippedAddress(StrictModel):
    address: str
    reason: str


class BroadcastStatus(StrictModel):
    broadcast_id: str
    status: str
    recipients: int
    queued: int
    delivered: int
    bounced: int
    skipped: int
    skipped_addresses: list[SkippedAddress]


@endpoint(bp, "/v1/messages/broadcast/", "POST", auth=SEND, tag="messages", body=BroadcastBody,
          response=BroadcastAnswer, status=202, holds=True,
          summary="One message to each contact of a label, with one-click unsubscribe; held as one approval "
                  "when the token's sends need approval")
def start_broadcast(ctx: Ctx) -> Reply:
    body = ctx.body
    inbox = inbox_for(ctx.db, ctx.principal, body.inbox_id)
    row = broadcast.start(ctx.db, ctx.settings, ctx.principal, inbox, broadcast.BroadcastInput(
        label_id=body.label_id, subject=body.subject, text_body=body.text_body, html_body=body.html_body,
        template_id=body.template_id, template_values=body.template_values))
    answer = {"queued": True, "broadcast_id": row.id, "recipients": row.recipients}
    if row.status == "held":
        answer["approval_id"] = approvals.approval_of(ctx.db, row.id).id
    return Reply(202, answer)


@endpoint(bp, "/v1/messages/broadcast/<broadcast_id>/", "GET", auth=READ, tag="messages", query=BroadcastQuery,
          response=BroadcastStatus, summary="A broadcast's progress: queued, delivered, bounced and skipped")
def broadcast_status(ctx: Ctx, broadcast_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    return broadcast.status_of(ctx.db, broadcast.get_broadcast(ctx.db, inbox, broadcast_id))
