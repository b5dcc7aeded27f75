"""Contract section 17, the audit log (issue 23): read it and verify its chain.

Owners and admins read their tenant's chain; operators read every chain (the box's and each
tenant's). Writing happens at the edges' commit points (api/framework.py, webui/store.py), never
through a route.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, IsoDateTime, StrictModel, endpoint
from appliance.services.governance import audit

bp = Blueprint("audit", __name__)


class AuditQuery(StrictModel):
    from_: IsoDateTime | None = Field(None, alias="from", description="Entries at or after this time.")
    to: IsoDateTime | None = Field(None, description="Entries before this time.")
    actor: str | None = Field(None, max_length=40, description="An actor id (usr_, tok_, wfl_, system:…).")
    action: str | None = Field(None, max_length=100,
                               description="An action (e.g. tokens.create_token); ending in '.' matches a prefix.")
    resource_type: str | None = Field(None, max_length=40, description="e.g. tokens, inboxes, domains.")
    cursor: str | None = Field(None, max_length=40, pattern=r"^aud_[0-9A-HJKMNP-TV-Z]{26}$")
    limit: int = Field(100, ge=1, le=500)


class AuditPage(BaseModel):
    results: list[dict[str, Any]]
    cursor: str | None


class VerifyAnswer(BaseModel):
    ok: bool
    public_key: str
    chains: list[dict[str, Any]]


@endpoint(bp, "/v1/audit/", "GET", auth=USER, tag="audit", query=AuditQuery, response=AuditPage,
          summary="The audit log, newest first (owners and admins: their tenant; operators: the box)")
def list_audit(ctx: Ctx) -> dict:
    q = ctx.query
    results, cursor = audit.list_entries(ctx.db, ctx.principal, frm=q.from_, to=q.to, actor=q.actor,
                                         action=q.action, resource_type=q.resource_type, cursor=q.cursor,
                                         limit=q.limit)
    return {"results": results, "cursor": cursor}


@endpoint(bp, "/v1/audit/verify/", "GET", auth=USER, tag="audit", response=VerifyAnswer,
          summary="Verify the hash chain and its signed checkpoints; names the first broken link")
def verify_audit(ctx: Ctx) -> dict:
    return audit.verify_for(ctx.db, ctx.settings.secret_key, ctx.principal)
