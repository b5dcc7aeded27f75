"""Contract section 14: sender rules and forwarding, one of each per inbox (issue 20.3, 20.4).

Agent tokens act on their own inbox; sessions name it (`inbox_id`). The rules live in
appliance/services/mail/sender_rules.py and forwarding.py.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import Ctx, PlainText, StrictModel, endpoint, scope
from appliance.services.mail import forwarding, sender_rules

bp = Blueprint("sender_rules", __name__)
READ, WRITE = scope("workflows:read"), scope("workflows:write")
Mode = Literal["open", "allowlist", "blocklist"]
PATTERNS = "Each `@domain` (that domain), `*.domain` (its subdomains) or an address; at most 1000."


class RulesInput(StrictModel):
    inbound_mode: Mode | None = Field(None, description="Who may write to the inbox (left out: unchanged).")
    outbound_mode: Mode | None = Field(None, description="Whom the inbox may write to (left out: unchanged).")
    inbound_patterns: list[PlainText] | None = Field(None, max_length=1000, description=PATTERNS)
    outbound_patterns: list[PlainText] | None = Field(None, max_length=1000, description=PATTERNS)


class RulesObject(BaseModel):
    inbox_id: str
    inbound_mode: Mode
    outbound_mode: Mode
    inbound_patterns: list[str]
    outbound_patterns: list[str]
    updated_at: str | None


class ForwardingInput(StrictModel):
    default_address: PlainText | None = Field(None, max_length=320, description="Where received mail is forwarded.")
    enabled: bool | None = Field(None, strict=True)  # true or false, never 0/1 (schemathesis)
    keep_copy: bool | None = Field(None, strict=True, description="Keep the received copy in the inbox (default true).")


class ForwardingObject(BaseModel):
    inbox_id: str
    default_address: str | None
    enabled: bool
    keep_copy: bool
    updated_at: str | None


@endpoint(bp, "/v1/sender-rules/", "GET", auth=READ, tag="sender-rules", response=RulesObject,
          summary="The inbox's inbound and outbound sender rules")
def get_rules(ctx: Ctx) -> dict:
    return sender_rules.get_rules(ctx.db, ctx.principal, ctx.inbox_id)


@endpoint(bp, "/v1/sender-rules/", "PUT", auth=WRITE, tag="sender-rules", body=RulesInput, response=RulesObject,
          summary="Set the inbox's sender rules (blocked inbound: 550 5.7.1; outbound: 403 recipient_not_allowed)")
def put_rules(ctx: Ctx) -> dict:
    data = ctx.body.model_dump(exclude={"inbox_id"}, exclude_none=True)
    return sender_rules.put_rules(ctx.db, ctx.principal, ctx.inbox_id, data)


@endpoint(bp, "/v1/forwarding/", "GET", auth=READ, tag="forwarding", response=ForwardingObject,
          summary="Where the inbox forwards what it receives")
def get_forwarding(ctx: Ctx) -> dict:
    return forwarding.get_forwarding(ctx.db, ctx.principal, ctx.inbox_id)


@endpoint(bp, "/v1/forwarding/", "PUT", auth=WRITE, tag="forwarding", body=ForwardingInput,
          response=ForwardingObject,
          summary="Set forwarding (SRS envelope sender, ARC-sealed, the original's DKIM kept)")
def put_forwarding(ctx: Ctx) -> dict:
    data = ctx.body.model_dump(exclude={"inbox_id"}, exclude_unset=True)
    data = {k: v for k, v in data.items() if v is not None or k == "default_address"}
    return forwarding.put_forwarding(ctx.db, ctx.principal, ctx.inbox_id, data)
