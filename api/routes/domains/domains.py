"""Contract section 2: domains, their DNS records, verification and DKIM rotation (user auth)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, Reply, StrictModel, endpoint
from appliance.services.domains import domains

bp = Blueprint("domains", __name__)


class DomainCreate(StrictModel):
    domain: str = Field(max_length=300)
    domain_use: Literal["existing_domain", "dedicated_subdomain"] = "existing_domain"
    dmarc_policy: Literal["none", "quarantine", "reject"] | None = None


class DnsRecord(BaseModel):
    type: str
    host: str
    value: str
    purpose: str
    required: bool
    status: Literal["ok", "missing", "mismatch", "unknown"]
    found: list[str] | None
    detail: str | None = None
    warnings: list[str] | None = None


class DomainObject(BaseModel):
    domain_id: str
    domain: str
    status: Literal["pending", "verified"]
    domain_use: str
    dmarc_policy: str
    created_at: str
    verified_at: str | None
    checked_at: str | None
    needs_attention: bool
    dns_records: list[DnsRecord]


class DomainList(BaseModel):
    results: list[DomainObject]
    cursor: None


class DomainCheck(BaseModel):
    domain: str
    checked_at: str
    records: list[DnsRecord]


def _render(ctx: Ctx, domain) -> dict:  # noqa: ANN001
    return domains.domain_to_dict(ctx.db, ctx.settings, domain)


@endpoint(bp, "/v1/domains/", "POST", auth=USER, tag="domains", body=DomainCreate, response=DomainObject,
          status=201, summary="Add a domain; the answer lists the DNS records to publish")
def add_domain(ctx: Ctx) -> dict:
    b = ctx.body
    return _render(ctx, domains.add_domain(ctx.db, ctx.settings, ctx.principal, b.domain, b.domain_use,
                                           b.dmarc_policy))


@endpoint(bp, "/v1/domains/", "GET", auth=USER, tag="domains", response=DomainList,
          summary="The tenant's domains")
def list_domains(ctx: Ctx) -> dict:
    return {"results": [_render(ctx, d) for d in domains.list_domains(ctx.db, ctx.principal)], "cursor": None}


@endpoint(bp, "/v1/domains/<name>/", "GET", auth=USER, tag="domains", response=DomainObject,
          summary="One domain with its DNS records and their last checked status")
def get_domain(ctx: Ctx, name: str) -> dict:
    return _render(ctx, domains.get_domain(ctx.db, ctx.principal, name))


@endpoint(bp, "/v1/domains/<name>/verify/", "POST", auth=USER, tag="domains", response=DomainObject,
          summary="Check DNS now; the domain becomes verified when every required record is ok")
def verify_domain(ctx: Ctx, name: str) -> dict:
    return _render(ctx, domains.verify_domain(ctx.db, ctx.settings, ctx.principal, name))


@endpoint(bp, "/v1/domains/<name>/check/", "GET", auth=USER, tag="domains", response=DomainCheck,
          summary="What DNS returns for each record now; changes nothing")
def check_domain(ctx: Ctx, name: str) -> dict:
    return domains.check_domain(ctx.db, ctx.settings, ctx.principal, name)


@endpoint(bp, "/v1/domains/<name>/dkim/rotate/", "POST", auth=USER, tag="domains", response=DomainObject,
          summary="Start a DKIM key rotation: publish the new selector, then verify")
def rotate_dkim(ctx: Ctx, name: str) -> dict:
    return _render(ctx, domains.rotate_dkim(ctx.db, ctx.settings, ctx.principal, name))


@endpoint(bp, "/v1/domains/<name>/", "DELETE", auth=USER, tag="domains", status=204,
          summary="Remove a domain (409 domain_in_use while it has active inboxes)")
def delete_domain(ctx: Ctx, name: str) -> Reply:
    domains.delete_domain(ctx.db, ctx.principal, name)
    return Reply(204)
