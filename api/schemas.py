"""Request and answer schemas; the OpenAPI document is generated from these."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.framework import IsoDateTime, PlainText, StrictModel

Limit = Field(50, ge=1, le=200)
# Cursors of id-ordered lists are ids (prefix_ + 26 Crockford base32 characters); anything else
# is refused with 400 rather than silently matching nothing.
ID_CURSOR = r"^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$"


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    fix: str | None = None
    docs_url: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None


class NextStep(BaseModel):
    code: str
    method: str
    path: str
    message: str


# --- section 1: access ---------------------------------------------------------------------
class WaitlistRequest(StrictModel):
    email: PlainText = Field(max_length=320)


class WaitlistAnswer(BaseModel):
    status: Literal["pending"]


class ValidateQuery(StrictModel):
    email: PlainText = Field(max_length=320)
    signup_token: str = Field(max_length=200)


class EmailAnswer(BaseModel):
    email: str


class SignupRequest(StrictModel):
    email: PlainText = Field(max_length=320)
    signup_token: str = Field(max_length=200)
    password: str = Field(max_length=1024)
    name: PlainText = Field("", max_length=200)


class SignupAnswer(BaseModel):
    user_id: str
    email: str


class LoginRequest(StrictModel):
    email: PlainText = Field(max_length=320)
    password: str = Field(max_length=1024)
    otp: PlainText | None = Field(default=None, max_length=16,
                                  description="The current TOTP code, for an account with a second factor.")


class LoginAnswer(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class RefreshRequest(StrictModel):
    refresh_token: str = Field(max_length=200)


class RefreshAnswer(BaseModel):
    """Both tokens are new: keep the refresh_token, the one sent no longer works (rotation)."""
    access_token: str
    refresh_token: str
    expires_in: int


class ChangePasswordRequest(StrictModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class MeAnswer(BaseModel):
    """A user session sees user_id/email/role; an agent token sees token_id/inbox_id/scopes."""

    user_id: str | None = None
    email: str | None = None
    name: str | None = None
    role: str | None = None
    is_operator: bool | None = None
    tenant_id: str | None = None
    created_at: str | None = None
    token_id: str | None = None
    inbox_id: str | None = None
    address: str | None = None
    scopes: list[str] | None = None
    requires_approval: list[str] | None = None
    next_step: NextStep | None


# --- section 4: tokens ---------------------------------------------------------------------
class TokenCreate(StrictModel):
    inbox_id: str = Field(max_length=40)
    label: PlainText = Field("", max_length=200)
    scopes: list[str] = Field(max_length=64)
    requires_approval: list[str] = Field(default_factory=list, max_length=64)
    expires_at: IsoDateTime | None = None


class TokenUpdate(StrictModel):
    action: Literal["pause", "resume", "rotate"] | None = None
    scopes: list[str] | None = Field(None, max_length=64)


class TokenQuery(StrictModel):
    inbox_id: str | None = Field(None, max_length=40)
    limit: int = Limit
    cursor: str | None = Field(None, max_length=100, pattern=ID_CURSOR)


class TokenObject(BaseModel):
    token_id: str
    label: str
    inbox_id: str
    scopes: list[str]
    requires_approval: list[str]
    status: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    token: str | None = Field(None, description="The raw token: only in the answer that created or rotated it.")


class TokenList(BaseModel):
    results: list[TokenObject]
    cursor: str | None


# --- section 6: events ---------------------------------------------------------------------
class EventQuery(StrictModel):
    inbox_id: str | None = Field(None, max_length=40)
    after: str | None = Field(None, max_length=40, pattern=r"^([0-9]{1,18}|[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26})$",
                              description="The cursor of the previous page (a seq), or an event id: "
                                          "events committed after it.")
    types: str | None = Field(None, max_length=1000, description="Comma-separated event types (registered ones).")
    limit: int = Limit


class EventActor(BaseModel):
    kind: str = Field(description="user, agent (a token), system, smtp, worker or workflow.")
    id: str | None


class EventObject(BaseModel):
    event_id: str
    seq: int = Field(description="Increases in commit order: page with after=<seq>, never missing an event.")
    type: str
    category: str
    inbox_id: str | None
    resource_id: str | None
    occurred_at: str
    actor: EventActor
    payload: dict[str, Any]


class EventList(BaseModel):
    results: list[EventObject]
    cursor: str | None = Field(description="The last event's seq, for after=; null on the last page.")


class ErrorReference(BaseModel):
    results: list[dict[str, Any]]
