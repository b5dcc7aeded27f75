"""Contract section 1: the waitlist, sign-up, sessions and GET /v1/users/me/."""
from __future__ import annotations

from flask import Blueprint

from api import schemas as s
from api.framework import ANY_TOKEN, PUBLIC, USER, Ctx, Reply, endpoint
from appliance.services.identity import accounts, users, waitlist

bp = Blueprint("access", __name__)


@endpoint(bp, "/v1/waitlist/", "POST", auth=PUBLIC, tag="access", body=s.WaitlistRequest,
          response=s.WaitlistAnswer, status=202, limit="waitlist",
          summary="Ask for access; the same answer whatever the address's state")
def request_access(ctx: Ctx) -> dict:
    waitlist.request_access(ctx.db, ctx.body.email, ctx.client_ip)
    return {"status": "pending"}


@endpoint(bp, "/v1/waitlist/validate/", "GET", auth=PUBLIC, tag="access", query=s.ValidateQuery,
          response=s.EmailAnswer, summary="Check a sign-up link before showing the form")
def validate_signup(ctx: Ctx) -> dict:
    entry, _ = waitlist.check_signup_token(ctx.db, ctx.query.email, ctx.query.signup_token)
    return {"email": entry.email}


@endpoint(bp, "/auth/signup/", "POST", auth=PUBLIC, tag="access", body=s.SignupRequest,
          response=s.SignupAnswer, status=201, summary="Redeem a sign-up link and create the account")
def sign_up(ctx: Ctx) -> dict:
    b = ctx.body
    user = accounts.sign_up(ctx.db, b.email, b.signup_token, b.password, b.name)
    return {"user_id": user.id, "email": user.email}


@endpoint(bp, "/auth/login/", "POST", auth=PUBLIC, tag="access", body=s.LoginRequest,
          response=s.LoginAnswer, summary="Exchange email and password for session tokens")
def log_in(ctx: Ctx) -> dict:
    issued = accounts.log_in_api(ctx.db, ctx.counters, ctx.settings, ctx.body.email, ctx.body.password,
                                 ctx.client_ip, ctx.body.otp)
    return {"access_token": issued.access_token, "refresh_token": issued.refresh_token,
            "token_type": "Bearer", "expires_in": issued.expires_in}


@endpoint(bp, "/auth/refresh/", "POST", auth=PUBLIC, tag="access", body=s.RefreshRequest,
          response=s.RefreshAnswer, summary="A new access token from a refresh token")
def refresh(ctx: Ctx) -> dict:
    issued = accounts.refresh(ctx.db, ctx.settings, ctx.body.refresh_token)
    return {"access_token": issued.access_token, "expires_in": issued.expires_in}


@endpoint(bp, "/auth/logout/", "POST", auth=USER, tag="access", status=204,
          summary="End this session at once")
def log_out(ctx: Ctx) -> Reply:
    accounts.log_out(ctx.db, ctx.principal.session)
    return Reply(204)


@endpoint(bp, "/auth/change-password/", "POST", auth=USER, tag="access", body=s.ChangePasswordRequest,
          status=204, summary="Change the password; every other session ends")
def change_password(ctx: Ctx) -> Reply:
    accounts.change_password(ctx.db, ctx.principal.user, ctx.principal.session,
                             ctx.body.current_password, ctx.body.new_password)
    return Reply(204)


@endpoint(bp, "/v1/users/me/", "GET", auth=ANY_TOKEN, tag="access", response=s.MeAnswer,
          summary="Who the token belongs to, and the next step")
def me(ctx: Ctx) -> dict:
    return users.describe_me(ctx.db, ctx.principal)
