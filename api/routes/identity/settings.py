"""Contract section 3a: tenant settings and inbox settings (issue 27).

The bodies declare each key's type for the OpenAPI document and refuse unknown keys (400 naming
the field); the settings service checks the values (zones, addresses, times) and writes all of a
PATCH or nothing.
"""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field, StrictBool

from api.framework import ANY_TOKEN, USER, Ctx, StrictModel, endpoint
from appliance.services.identity import settings

bp = Blueprint("settings", __name__)


class AutoReply(StrictModel):
    enabled: StrictBool | None = Field(None, description="Answer incoming mail (RFC 3834 rules).")
    subject: str | None = Field(None, max_length=300, description="Empty: 'Auto: ' and the original subject.")
    text_body: str | None = Field(None, max_length=settings.MAX_REPLY_BODY)
    until: str | None = Field(None, max_length=100, description="Stop answering at this time (ISO 8601; "
                                                                 "without an offset, in the inbox's zone).")


class PhishingThresholds(StrictModel):
    suspicious: float | None = Field(None, gt=0, le=100, description="Score from which mail is `suspicious`.")
    phishing: float | None = Field(None, gt=0, le=100, description="Score from which mail is `phishing`.")


class InboxDefaults(StrictModel):
    signature_text: str | None = Field(None, max_length=settings.MAX_SIGNATURE)
    signature_html: str | None = Field(None, max_length=settings.MAX_SIGNATURE,
                                       description="Sanitised like received mail (no scripts, no handlers).")
    auto_contacts: StrictBool | None = None
    webhook_events: list[str] | None = Field(None, description="Event types sent to the inbox's default webhook.")
    auto_reply: AutoReply | None = None
    phishing_thresholds: PhishingThresholds | None = Field(None, description="Cut-offs of the builtin phishing "
                                                                             "score (docs/intelligence.md).")


class InboxSettingsBody(InboxDefaults):
    display_name: str | None = Field(None, max_length=200)
    default_timezone: str | None = Field(None, max_length=64, description="IANA zone; null: the tenant's.")


class TenantSettingsBody(StrictModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    default_timezone: str | None = Field(None, max_length=64, description="IANA zone, e.g. Europe/Berlin.")
    default_inbox_settings: InboxDefaults | None = None
    llm_consent: StrictBool | None = Field(None, description="May any AI feature call an external model.")
    notify_address: str | None = Field(None, max_length=320)


class AutoReplyObject(BaseModel):
    enabled: bool
    subject: str
    text_body: str
    until: str | None


class InboxSettings(BaseModel):
    inbox_id: str
    display_name: str
    default_timezone: str
    signature_text: str
    signature_html: str
    auto_contacts: bool
    webhook_events: list[str]
    auto_reply: AutoReplyObject
    enrichment: dict = Field(description="What the worker adds to received mail: model, enabled_features, "
                                         "budget_limit (issue 21).")
    phishing_thresholds: dict = Field(description="{suspicious, phishing}: cut-offs of the phishing score.")


class TenantSettings(BaseModel):
    tenant_id: str
    name: str
    default_timezone: str
    default_inbox_settings: dict
    llm_consent: bool
    notify_address: str | None


def _sent(body: StrictModel) -> dict:
    """Only the keys the caller sent (null included: it means back to the default)."""
    return body.model_dump(exclude_unset=True)


@endpoint(bp, "/v1/settings/", "GET", auth=USER, tag="settings", response=TenantSettings,
          summary="The tenant's settings, defaults included (any session of the tenant)")
def get_tenant_settings(ctx: Ctx) -> dict:
    return settings.get_tenant_settings(ctx.db, ctx.principal)


@endpoint(bp, "/v1/settings/", "PATCH", auth=USER, tag="settings", body=TenantSettingsBody,
          response=TenantSettings, summary="Change the tenant's settings (owner/admin); all or nothing")
def update_tenant_settings(ctx: Ctx) -> dict:
    return settings.update_tenant_settings(ctx.db, ctx.principal, _sent(ctx.body))


@endpoint(bp, "/v1/inboxes/<inbox_id>/settings/", "GET", auth=ANY_TOKEN, tag="settings", response=InboxSettings,
          summary="An inbox's settings, defaults included (a user of the inbox, or its own agent token)")
def get_inbox_settings(ctx: Ctx, inbox_id: str) -> dict:
    return settings.get_inbox_settings(ctx.db, ctx.principal, inbox_id)


@endpoint(bp, "/v1/inboxes/<inbox_id>/settings/", "PATCH", auth=USER, tag="settings", body=InboxSettingsBody,
          response=InboxSettings, summary="Change an inbox's settings (people only); all or nothing")
def update_inbox_settings(ctx: Ctx, inbox_id: str) -> dict:
    return settings.update_inbox_settings(ctx.db, ctx.principal, inbox_id, _sent(ctx.body))
