"""Contract section 20: app passwords for people's mail clients (user auth)."""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, Reply, endpoint
from api.schemas import ID_CURSOR, Limit, PlainText, StrictModel
from appliance.services.identity import app_passwords

bp = Blueprint("app_passwords", __name__)


class AppPasswordCreate(StrictModel):
    inbox_id: str = Field(max_length=40)
    label: PlainText = Field("", max_length=200, description="Which client uses it, e.g. Thunderbird on the laptop.")


class AppPasswordQuery(StrictModel):
    limit: int = Limit
    cursor: str | None = Field(None, max_length=100, pattern=ID_CURSOR)


class AppPasswordObject(BaseModel):
    app_password_id: str
    inbox_id: str
    label: str
    created_at: str
    last_used_at: str | None
    password: str | None = Field(None, description="The secret: only in the answer that created it.")


class AppPasswordList(BaseModel):
    results: list[AppPasswordObject]
    cursor: str | None


@endpoint(bp, "/v1/app-passwords/", "POST", auth=USER, tag="app-passwords", body=AppPasswordCreate,
          response=AppPasswordObject, status=201,
          summary="Create an app password for IMAP and SMTP submission; the secret is shown only here")
def create_app_password(ctx: Ctx) -> dict:
    issued = app_passwords.create(ctx.db, ctx.principal, inbox_id=ctx.body.inbox_id, label=ctx.body.label)
    return app_passwords.to_dict(issued.row, issued.raw)


@endpoint(bp, "/v1/app-passwords/", "GET", auth=USER, tag="app-passwords", query=AppPasswordQuery,
          response=AppPasswordList, summary="List your app passwords (never their secrets)")
def list_app_passwords(ctx: Ctx) -> dict:
    rows = app_passwords.list_own(ctx.db, ctx.principal, after=ctx.query.cursor, limit=ctx.query.limit + 1)
    page = rows[:ctx.query.limit]
    return {"results": [app_passwords.to_dict(r) for r in page],
            "cursor": page[-1].id if len(rows) > ctx.query.limit else None}


@endpoint(bp, "/v1/app-passwords/<app_password_id>/", "DELETE", auth=USER, tag="app-passwords", status=204,
          summary="Revoke an app password; its client is refused at the next sign-in")
def revoke_app_password(ctx: Ctx, app_password_id: str) -> Reply:
    app_passwords.revoke(ctx.db, ctx.principal, app_password_id)
    return Reply(204)
