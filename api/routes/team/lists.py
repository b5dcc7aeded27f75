"""Contract section 10, distribution lists (issue 16.5): owner/admin sessions manage a tenant's
lists and their member inboxes. The rules live in appliance/services/team/lists.py; the SMTP
listener delivers a list's mail (appliance/services/mail/inbound.py)."""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, PlainText, Reply, StrictModel, endpoint
from appliance.services.team import lists

bp = Blueprint("distribution_lists", __name__)


class ListCreate(StrictModel):
    address: str = Field(max_length=320, description="The list's address, on one of your verified domains.")
    name: PlainText = Field("", max_length=200)


class MemberAdd(StrictModel):
    inbox_id: str = Field(max_length=40, description="An inbox of your tenant.")


class ListMember(BaseModel):
    inbox_id: str
    address: str
    status: str


class ListObject(BaseModel):
    list_id: str
    address: str
    name: str
    list_id_header: str = Field(description="The List-Id stamped on every copy (RFC 2919); mail carrying it "
                                            "again is a loop and is refused.")
    created_at: str
    members: list[ListMember]


class ListList(BaseModel):
    results: list[ListObject]


@endpoint(bp, "/v1/distribution-lists/", "POST", auth=USER, tag="distribution-lists", body=ListCreate,
          response=ListObject, status=201, summary="Create a distribution list (owner/admin)")
def create_list(ctx: Ctx) -> dict:
    return lists.list_to_dict(ctx.db, lists.create_list(ctx.db, ctx.principal, ctx.body.address, ctx.body.name))


@endpoint(bp, "/v1/distribution-lists/", "GET", auth=USER, tag="distribution-lists", response=ListList,
          summary="The tenant's distribution lists with their members (owner/admin)")
def list_lists(ctx: Ctx) -> dict:
    return {"results": [lists.list_to_dict(ctx.db, row) for row in lists.list_lists(ctx.db, ctx.principal)]}


@endpoint(bp, "/v1/distribution-lists/<list_id>/", "GET", auth=USER, tag="distribution-lists",
          response=ListObject, summary="One distribution list with its members (owner/admin)")
def get_list(ctx: Ctx, list_id: str) -> dict:
    return lists.list_to_dict(ctx.db, lists.get_list(ctx.db, ctx.principal, list_id))


@endpoint(bp, "/v1/distribution-lists/<list_id>/", "DELETE", auth=USER, tag="distribution-lists", status=204,
          summary="Delete a distribution list: its address receives nothing more (owner/admin)")
def delete_list(ctx: Ctx, list_id: str) -> Reply:
    lists.delete_list(ctx.db, ctx.principal, list_id)
    return Reply(204)


@endpoint(bp, "/v1/distribution-lists/<list_id>/members/", "POST", auth=USER, tag="distribution-lists",
          body=MemberAdd, response=ListObject, status=201,
          summary="Add an inbox of the tenant to the list: it gets a copy of every message (owner/admin)")
def add_member(ctx: Ctx, list_id: str) -> dict:
    return lists.list_to_dict(ctx.db, lists.add_member(ctx.db, ctx.principal, list_id, ctx.body.inbox_id))


@endpoint(bp, "/v1/distribution-lists/<list_id>/members/<inbox_id>/", "DELETE", auth=USER,
          tag="distribution-lists", status=204, summary="Take an inbox off the list (owner/admin)")
def remove_member(ctx: Ctx, list_id: str, inbox_id: str) -> Reply:
    lists.remove_member(ctx.db, ctx.principal, list_id, inbox_id)
    return Reply(204)
