"""Contract section 18, compliance (issue 23): exports, erasure, retention and the audit bundle.

Every route is for people signed in (session tokens): an export or an erasure is a person's
decision, never an agent's. The export's download link is the one public route: its signature
(HMAC over the id and the expiry) is the credential, valid 24 hours.
"""
from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from api.framework import PUBLIC, USER, Ctx, IsoDateTime, Reply, StrictModel, endpoint
from appliance.httputil import content_disposition
from appliance.services.governance import bundle, compliance, export, retention

bp = Blueprint("compliance", __name__)


class ExportBody(StrictModel):
    scope: Literal["user", "tenant"] = Field("user", description="user: your own data; tenant: the whole tenant "
                                                                 "(owners).")


class ExportCreated(BaseModel):
    export_id: str
    status: str


class ExportList(BaseModel):
    results: list[dict[str, Any]]


class DownloadQuery(StrictModel):
    expires: int = Field(..., ge=0, le=2**40, description="Unix time the link expires (part of the signed link).")
    signature: str = Field(..., min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")


class DeletionBody(StrictModel):
    scope: Literal["user", "tenant", "address"] = Field(
        ..., description="user: your account; tenant: the whole tenant (owner); address: a correspondent's data "
                         "across the tenant's inboxes (owner/admin).")
    address: str | None = Field(None, max_length=320, description="The correspondent's address (scope address).")


class DeletionAnswer(BaseModel):
    deletion_id: str
    scope: str
    status: str
    effective_at: str
    created_at: str
    cancelled_at: str | None = None
    completed_at: str | None = None
    counts: dict[str, int] = {}


class DeletionList(BaseModel):
    results: list[DeletionAnswer]


class RetentionBody(StrictModel):
    messages_days: int | None = Field(None, ge=1, le=retention.MAX_DAYS, description="Messages older are deleted.")
    events_days: int | None = Field(None, ge=1, le=retention.MAX_DAYS, description="Events older are deleted.")
    audit_days: int | None = Field(None, ge=retention.MIN_AUDIT_DAYS, le=retention.MAX_DAYS,
                                   description="Audit entries older are pruned, leaving a signed anchor.")


class RetentionAnswer(BaseModel):
    messages_days: int | None
    events_days: int | None
    audit_days: int | None
    applied_at: str | None
    last_result: dict[str, Any]


class BundleQuery(StrictModel):
    from_: IsoDateTime | None = Field(None, alias="from", description="Entries at or after this time.")
    to: IsoDateTime | None = Field(None, description="Entries before this time.")


@endpoint(bp, "/v1/compliance/export/", "POST", auth=USER, tag="compliance", body=ExportBody, response=ExportCreated,
          status=202, summary="Request an export of your data (or, for an owner, the tenant's); the worker builds it")
def request_export(ctx: Ctx) -> dict:
    row = export.request_export(ctx.db, ctx.principal, ctx.body.scope)
    return {"export_id": row.id, "status": row.status}


@endpoint(bp, "/v1/compliance/export/", "GET", auth=USER, tag="compliance", response=ExportList,
          summary="Exports with their status and, when ready, a signed download_url valid 24 hours")
def list_exports(ctx: Ctx) -> dict:
    return {"results": export.list_exports(ctx.db, ctx.settings, ctx.principal)}


@endpoint(bp, "/v1/compliance/export/<export_id>/download/", "GET", auth=PUBLIC, tag="compliance",
          query=DownloadQuery, content_type="application/zip",
          summary="Download a ready export through its signed link (the signature is the credential)")
def download_export(ctx: Ctx, export_id: str) -> Reply:
    name, data = export.download(ctx.db, ctx.settings, export_id, ctx.query.expires, ctx.query.signature)
    return Reply(200, Response(data, mimetype="application/zip", headers={
        "Content-Disposition": content_disposition(name), "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"}))


@endpoint(bp, "/v1/compliance/deletion/", "POST", auth=USER, tag="compliance", body=DeletionBody,
          response=DeletionAnswer, status=202,
          summary="Schedule an erasure after a 7-day grace period (user, tenant, or a correspondent's address)")
def request_deletion(ctx: Ctx) -> dict:
    row = compliance.request_deletion(ctx.db, ctx.settings, ctx.principal, ctx.body.scope, ctx.body.address)
    return compliance.present_deletion(row)


@endpoint(bp, "/v1/compliance/deletion/", "GET", auth=USER, tag="compliance", response=DeletionList,
          summary="Erasure requests of the tenant (a member: their own), newest first")
def list_deletions(ctx: Ctx) -> dict:
    return {"results": [compliance.present_deletion(r) for r in compliance.list_deletions(ctx.db, ctx.principal)]}


@endpoint(bp, "/v1/compliance/deletion/<deletion_id>/", "DELETE", auth=USER, tag="compliance",
          response=DeletionAnswer, summary="Cancel a scheduled erasure within its grace period")
def cancel_deletion(ctx: Ctx, deletion_id: str) -> dict:
    return compliance.present_deletion(compliance.cancel_deletion(ctx.db, ctx.principal, deletion_id))


@endpoint(bp, "/v1/compliance/retention/", "GET", auth=USER, tag="compliance", response=RetentionAnswer,
          summary="The tenant's retention policy (null: kept for ever) and its last run")
def get_retention(ctx: Ctx) -> dict:
    return retention.get_policy(ctx.db, ctx.principal.tenant_id)


@endpoint(bp, "/v1/compliance/retention/", "PUT", auth=USER, tag="compliance", body=RetentionBody,
          response=RetentionAnswer, summary="Set the retention policy (owners and admins); the worker applies it daily")
def set_retention(ctx: Ctx) -> dict:
    return retention.set_policy(ctx.db, ctx.principal, ctx.body.model_dump())


@endpoint(bp, "/v1/compliance/audit-bundle/", "GET", auth=USER, tag="compliance", query=BundleQuery,
          content_type="application/zip",
          summary="A zip for auditors: the audit log verified, access review, configuration, changes, "
                  "security signals and a SOC 2 control map")
def audit_bundle(ctx: Ctx) -> Reply:
    data = bundle.audit_bundle(ctx.db, ctx.settings, ctx.principal, ctx.query.from_, ctx.query.to)
    return Reply(200, Response(data, mimetype="application/zip", headers={
        "Content-Disposition": content_disposition("gentbox-audit-bundle.zip"), "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"}))
