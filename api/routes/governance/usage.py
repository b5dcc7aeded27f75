"""Contract section 16: usage, caps and stats (issue 22).

Reading needs billing:read (stats: stats:read), an agent token seeing its own inbox's figures, a
session its tenant's (owners and admins). Changing caps needs billing:write and an owner's or
admin's session: a token never raises its own cap. The rules live in
appliance/services/governance/caps.py and usage.py.
"""
from __future__ import annotations

from typing import Any, Literal

import pydantic
from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, IsoDateTime, StrictModel, endpoint, scope
from appliance.services.governance import caps, usage
from appliance.services.identity.auth import inbox_for

bp = Blueprint("usage", __name__)
READ, WRITE, STATS = scope("billing:read"), scope("billing:write"), scope("stats:read")
Thresholds = Field(None, max_length=10, description="Percentages that emit cap.reached once per period "
                                                      "(default [80, 95, 100]).")


class UsageQuery(StrictModel):
    period: str | None = Field(None, pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (UTC); default: this month.")
    inbox_id: str | None = Field(None, max_length=40, description="Only this inbox (agent tokens: always theirs).")


class StatsQuery(StrictModel):
    from_: IsoDateTime | None = Field(None, alias="from", description="Start (default: `to` minus 24 hours or 30 days).")
    to: IsoDateTime | None = Field(None, description="End (default: now).")
    interval: Literal["hour", "day"] = "hour"
    inbox_id: str | None = Field(None, max_length=40)


class InboxUsage(BaseModel):
    model_config = ConfigDict(extra="allow")
    inbox_id: str
    address: str


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")
    period: str
    mailbox_storage_bytes: int
    files_storage_bytes: int
    sends: int
    messages_received: int
    workflow_runs: int
    approvals: int
    enrichment_spend: float
    spend: float
    inboxes: list[InboxUsage]


class Stats(BaseModel):
    interval: str
    from_: str = Field(alias="from")
    to: str
    times: list[str]
    series: dict[str, list[int]] = Field(description="sends, receives, bounces, workflow_runs, approvals, "
                                                     "broadcasts, file_writes: one value per time.")


class CapObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    cap_id: str | None = Field(description="null for the operator's box-wide default")
    kind: Literal["sends", "mailbox", "files", "spend"]
    level: Literal["tenant", "inbox", "token"]
    id: str
    default: bool
    alert_thresholds: list[int]
    used: dict[str, Any]


class CapList(BaseModel):
    results: list[CapObject]


class SendCapBody(StrictModel):
    level: Literal["tenant", "inbox", "token"]
    id: str | None = Field(None, max_length=40, description="The inbox or token id (tenant: omit it).")
    per_hour: int | None = Field(None, ge=0, le=10_000_000, strict=True)
    per_day: int | None = Field(None, ge=0, le=100_000_000, strict=True)
    per_month: int | None = Field(None, ge=0, le=1_000_000_000, strict=True)
    alert_thresholds: list[pydantic.StrictInt] | None = Thresholds


class StorageCapBody(StrictModel):
    inbox_id: str | None = Field(None, max_length=40, description="The inbox; omit it for the tenant's cap.")
    limit_gb: float | None = Field(description="Decimal gigabytes (1 GB = 10^9 bytes); null removes the cap.",
                                   ge=0, le=1_000_000, strict=True)
    mode: Literal["enforce", "allow_and_bill"] = "enforce"
    alert_thresholds: list[pydantic.StrictInt] | None = Thresholds


class SpendCapBody(StrictModel):
    monthly_limit: float | None = Field(description="In the operator's currency; null removes the cap.",
                                        ge=0, le=1e12, strict=True)
    mode: Literal["enforce", "allow_and_bill"] = "enforce"
    alert_thresholds: list[pydantic.StrictInt] | None = Thresholds


def _inbox_filter(ctx: Ctx, inbox_id: str | None) -> str | None:
    """An agent token: its own inbox; a session: the inbox it names (checked), or the whole tenant."""
    caps.require_reader(ctx.principal)
    if ctx.principal.own_inbox_id is None and inbox_id is None:
        return None
    return inbox_for(ctx.db, ctx.principal, inbox_id).id


@endpoint(bp, "/v1/billing/usage/", "GET", auth=READ, tag="usage", query=UsageQuery, response=Usage,
          summary="Usage of a period (YYYY-MM): storage, sends (per recipient), receives, approvals, spend")
def get_usage(ctx: Ctx) -> dict:
    inbox_id = _inbox_filter(ctx, ctx.query.inbox_id)
    return usage.usage_report(ctx.db, ctx.settings, ctx.principal.tenant_id, ctx.query.period, inbox_id=inbox_id)


@endpoint(bp, "/v1/stats/", "GET", auth=STATS, tag="usage", query=StatsQuery, response=Stats,
          summary="Series by hour or day: sends, receives, bounces, workflow runs, approvals, broadcasts, file writes")
def get_stats(ctx: Ctx) -> dict:
    q = ctx.query
    inbox_id = _inbox_filter(ctx, q.inbox_id)
    start, end = usage.stats_window(q.from_, q.to, q.interval)
    return usage.stats(ctx.db, ctx.principal.tenant_id, start=start, end=end, interval=q.interval, inbox_id=inbox_id)


@endpoint(bp, "/v1/billing/caps/", "GET", auth=READ, tag="usage", response=CapList,
          summary="Every cap (tenant, inbox, token; the operator's defaults) with what is used of it now")
def list_caps(ctx: Ctx) -> dict:
    return {"results": caps.list_caps(ctx.db, ctx.settings, ctx.principal)}


def _put_reply(cap: dict | None) -> dict:
    return cap if cap is not None else {"cap_id": None, "removed": True}


@endpoint(bp, "/v1/billing/caps/sends/", "PUT", auth=WRITE, tag="usage", body=SendCapBody,
          summary="Set a send cap of the tenant, an inbox or a token (owner/admin session); all null removes it")
def put_send_cap(ctx: Ctx) -> dict:
    b = ctx.body
    return _put_reply(caps.set_send_cap(ctx.db, ctx.principal, level=b.level, subject_id=b.id, per_hour=b.per_hour,
                                        per_day=b.per_day, per_month=b.per_month,
                                        alert_thresholds=b.alert_thresholds))


@endpoint(bp, "/v1/billing/caps/mailbox/", "PUT", auth=WRITE, tag="usage", body=StorageCapBody,
          summary="Set the mailbox storage cap of the tenant or an inbox (enforce: inbound over it gets 452 4.2.2)")
def put_mailbox_cap(ctx: Ctx) -> dict:
    return _storage(ctx, "mailbox")


@endpoint(bp, "/v1/billing/caps/files/", "PUT", auth=WRITE, tag="usage", body=StorageCapBody,
          summary="Set the files storage cap of the tenant or an inbox (enforce: writes over it get 403 cap_reached)")
def put_files_cap(ctx: Ctx) -> dict:
    return _storage(ctx, "files")


def _storage(ctx: Ctx, kind: str) -> dict:
    b = ctx.body
    return _put_reply(caps.set_storage_cap(ctx.db, ctx.principal, kind=kind, inbox_id=b.inbox_id, limit_gb=b.limit_gb,
                                           mode=b.mode, alert_thresholds=b.alert_thresholds))


@endpoint(bp, "/v1/billing/caps/spend/", "PUT", auth=WRITE, tag="usage", body=SpendCapBody,
          summary="Set the tenant's monthly spend cap (the operator's unit prices times usage)")
def put_spend_cap(ctx: Ctx) -> dict:
    b = ctx.body
    return _put_reply(caps.set_spend_cap(ctx.db, ctx.settings, ctx.principal, monthly_limit=b.monthly_limit,
                                         mode=b.mode, alert_thresholds=b.alert_thresholds))
