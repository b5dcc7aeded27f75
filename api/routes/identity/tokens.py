"""Contract section 4: agent tokens (user auth)."""
from __future__ import annotations

from flask import Blueprint

from api import schemas as s
from api.framework import USER, Ctx, Reply, endpoint
from appliance.services.identity import tokens

bp = Blueprint("tokens", __name__)


@endpoint(bp, "/v1/tokens/", "POST", auth=USER, tag="tokens", body=s.TokenCreate, response=s.TokenObject,
          status=201, summary="Issue an agent token for an inbox; the raw token is shown only here")
def create_token(ctx: Ctx) -> dict:
    b = ctx.body
    issued = tokens.create_token(ctx.db, ctx.principal, inbox_id=b.inbox_id, label=b.label, scopes=b.scopes,
                                 requires_approval=b.requires_approval, expires_at=b.expires_at)
    return tokens.token_to_dict(issued.token, issued.raw)


@endpoint(bp, "/v1/tokens/", "GET", auth=USER, tag="tokens", query=s.TokenQuery, response=s.TokenList,
          summary="List the tenant's tokens (never their secrets)")
def list_tokens(ctx: Ctx) -> dict:
    q = ctx.query
    rows = tokens.list_tokens(ctx.db, ctx.principal, q.inbox_id, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [tokens.token_to_dict(t) for t in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/tokens/<token_id>/", "PATCH", auth=USER, tag="tokens", body=s.TokenUpdate,
          response=s.TokenObject, summary="Pause, resume, rotate or narrow a token")
def update_token(ctx: Ctx, token_id: str) -> dict:
    issued = tokens.update_token(ctx.db, ctx.principal, token_id, action=ctx.body.action,
                                 scopes=ctx.body.scopes)
    return tokens.token_to_dict(issued.token, issued.raw)


@endpoint(bp, "/v1/tokens/<token_id>/", "DELETE", auth=USER, tag="tokens", status=204,
          summary="Revoke a token; effective on the very next call")
def revoke_token(ctx: Ctx, token_id: str) -> Reply:
    tokens.revoke_token(ctx.db, ctx.principal, token_id)
    return Reply(204)
