"""Contract section 7, approvals (issue 8): held agent actions, listed and decided.

Reading needs approvals:read (an agent token sees its own inbox's approvals; a reviewing token,
one with approvals:write and nothing held itself, the tenant's) or an owner's/admin's session.
Deciding needs approvals:write or such a session, and never comes from the held inbox's own
tokens: the rules live in appliance/services/governance/approvals.py.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, Reply, StrictModel, endpoint, scope
from appliance.services.governance import approvals

bp = Blueprint("approvals", __name__)
READ, WRITE = scope("approvals:read"), scope("approvals:write")
Status = Literal["pending", "approved", "rejected", "expired"]


class ApprovalQuery(StrictModel):
    status: Status | None = Field(None, description="Only approvals in this state; default: all, pending first.")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=100, pattern=r"^[01]\.apr_[0-9A-HJKMNP-TV-Z]{26}$")


class ApprovalSummary(BaseModel):
    """What reviewers are shown. For email:send: the held message, its recipients (bcc
    included), subject, first lines and attachment names."""

    model_config = ConfigDict(extra="allow")

    message_id: str | None = None
    thread_id: str | None = None
    recipients: list[str] = []
    subject: str | None = None
    first_lines: str | None = None
    attachments: list[str] = []


class ApprovalObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_id: str
    inbox_id: str
    action_type: str = Field(description="The held scope, e.g. email:send.")
    token_label: str
    summary: ApprovalSummary
    status: Status
    queued_at: str
    expires_at: str
    decided_by: str | None = Field(description="usr_ or tok_ id of who decided; null while pending or "
                                               "when it expired.")
    decided_at: str | None


class ApprovalList(BaseModel):
    results: list[ApprovalObject]
    cursor: str | None


@endpoint(bp, "/v1/approvals/", "GET", auth=READ, tag="approvals", query=ApprovalQuery, response=ApprovalList,
          summary="Held agent actions: pending first (or one status), newest first")
def list_approvals(ctx: Ctx) -> dict:
    q = ctx.query
    page, cursor = approvals.list_approvals(ctx.db, ctx.principal, status=q.status, limit=q.limit, cursor=q.cursor)
    return {"results": [approvals.approval_to_dict(a) for a in page], "cursor": cursor}


@endpoint(bp, "/v1/approvals/<approval_id>/", "GET", auth=READ, tag="approvals", response=ApprovalObject,
          summary="One held action and its state")
def get_approval(ctx: Ctx, approval_id: str) -> dict:
    return approvals.approval_to_dict(approvals.get_approval(ctx.db, ctx.principal, approval_id))


@endpoint(bp, "/v1/approvals/<approval_id>/approve/", "POST", auth=WRITE, tag="approvals", status=204,
          summary="Approve: the held action goes ahead (a held send is DKIM-signed and queued as held)")
def approve(ctx: Ctx, approval_id: str) -> Reply:
    approvals.approve(ctx.db, ctx.settings, ctx.principal, approval_id)
    return Reply(204)


@endpoint(bp, "/v1/approvals/<approval_id>/reject/", "POST", auth=WRITE, tag="approvals", status=204,
          summary="Reject: the held action is dropped for good (a held send is never delivered)")
def reject(ctx: Ctx, approval_id: str) -> Reply:
    approvals.reject(ctx.db, ctx.settings, ctx.principal, approval_id)
    return Reply(204)
