"""Contract section 15: enrichment settings per inbox and the models on offer (issue 21 point 5).

`builtin` runs on the box; any other model is an endpoint the operator configured
(`model_endpoints`, docs/configuration.md) and needs the tenant's llm_consent. The rules live in
appliance/services/intelligence/models.py.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, Field

from api import references
from api.framework import Ctx, StrictModel, endpoint, scope
from appliance.services.intelligence import models

bp = Blueprint("enrichment", __name__)
Feature = Literal["phishing_detection", "next_step", "contact_digest", "thread_digest"]


class EnrichmentBody(StrictModel):
    model: str | None = Field(None, min_length=1, max_length=40,
                              description="builtin, or a name from GET /v1/enrichment/reference/ `models`.")
    enabled_features: list[Feature] | None = Field(None, max_length=4)
    budget_limit: float | None = Field(None, ge=0, le=1e9, strict=True, description="Most the inbox's model calls may cost a "
                                                                         "month (the spend cap's unit); null: none.")


class Enrichment(BaseModel):
    inbox_id: str
    model: str
    enabled_features: list[str]
    budget_limit: float | None
    spent: float = Field(description="What the inbox's model calls cost this month (UTC).")


class EnrichmentReference(BaseModel):
    features: list[str]
    models: list[str] = Field(description="builtin first, then the operator's endpoints.")


@endpoint(bp, "/v1/enrichment/", "GET", auth=scope("context:read", "llm:write"), tag="enrichment",
          response=Enrichment, summary="The inbox's enrichment model, features, budget and this month's spend")
def get_enrichment(ctx: Ctx) -> dict:
    return models.get_enrichment(ctx.db, ctx.principal, ctx.inbox_id)


@endpoint(bp, "/v1/enrichment/", "PUT", auth=scope("llm:write"), tag="enrichment", body=EnrichmentBody,
          response=Enrichment, summary="Choose the inbox's model (external ones need llm_consent), features, budget")
def put_enrichment(ctx: Ctx) -> dict:
    changes = ctx.body.model_dump(exclude={"inbox_id"}, exclude_unset=True)
    if changes.get("model") is None:
        changes.pop("model", None)
    if changes.get("enabled_features") is None:
        changes.pop("enabled_features", None)
    return models.update_enrichment(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, changes)


@references.extend("enrichment")
def enrichment_reference(ctx: Ctx) -> dict:
    """The generated /v1/enrichment/reference/ plus the features and the models an inbox may choose
    (builtin always, then the operator's endpoints' names: never their addresses or keys)."""
    return EnrichmentReference(**models.reference(ctx.settings)).model_dump()
