"""Contract section 9, labels (issue 16): an inbox's labels with their colours, types and counts.

A message's `labels` stay names (PATCH /v1/messages/{id}/); this resource gives each name an id,
a colour and a type. The rules live in appliance/services/mail/labels.py.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.identity.auth import inbox_for
from appliance.services.mail import labels

bp = Blueprint("labels", __name__)
READ, WRITE = scope("labels:read"), scope("labels:write")
LabelType = Literal["message", "contact", "any"]
# #rrggbb, checked by the service (400 naming color), so the schema's type errors come first.
Color = Field(None, max_length=7, description="#rrggbb")


class LabelCreate(StrictModel):
    inbox_id: str | None = Field(None, max_length=40, description="Session tokens: the inbox. Agent tokens: omit it.")
    name: PlainText = Field(min_length=1, max_length=100)
    color: PlainText | None = Color
    type: LabelType = Field("any", description="What the label tags: message, contact or any.")


class LabelUpdate(StrictModel):
    name: PlainText | None = Field(None, min_length=1, max_length=100,
                                   description="A new name: the inbox's messages and contacts follow.")
    color: PlainText | None = Color
    type: LabelType | None = None


class LabelQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=r"^lbl_[0-9A-HJKMNP-TV-Z]{26}$")
    type: LabelType | None = None


class LabelObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_id: str
    inbox_id: str
    name: str
    color: str | None
    type: LabelType
    created_at: str
    message_count: int
    contact_count: int


class LabelList(BaseModel):
    results: list[LabelObject]
    cursor: str | None


def _render(ctx: Ctx, inbox, label) -> dict:  # noqa: ANN001
    return labels.label_to_dict(label, labels.counts(ctx.db, inbox))


@endpoint(bp, "/v1/labels/", "POST", auth=WRITE, tag="labels", body=LabelCreate, response=LabelObject, status=201,
          summary="Create a label in the inbox; its name is unique there (409)")
def create_label(ctx: Ctx) -> Reply:
    b = ctx.body
    inbox = inbox_for(ctx.db, ctx.principal, b.inbox_id)
    label = labels.create_label(ctx.db, inbox, name=b.name, color=b.color, type_=b.type, actor=ctx.principal.id)
    return Reply(201, _render(ctx, inbox, label))


@endpoint(bp, "/v1/labels/", "GET", auth=READ, tag="labels", query=LabelQuery, response=LabelList,
          summary="The inbox's labels in creation order, with message and contact counts")
def list_labels(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    page, cursor = labels.list_labels(ctx.db, inbox, limit=ctx.query.limit, cursor=ctx.query.cursor,
                                      type_=ctx.query.type)
    counted = labels.counts(ctx.db, inbox)
    return {"results": [labels.label_to_dict(label, counted) for label in page], "cursor": cursor}


@endpoint(bp, "/v1/labels/<label_id>/", "GET", auth=READ, tag="labels", response=LabelObject,
          summary="One label with its counts")
def get_label(ctx: Ctx, label_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    return _render(ctx, inbox, labels.get_label(ctx.db, inbox, label_id))


@endpoint(bp, "/v1/labels/<label_id>/", "PATCH", auth=WRITE, tag="labels", body=LabelUpdate, response=LabelObject,
          summary="Rename (messages and contacts follow), recolour or retype a label")
def update_label(ctx: Ctx, label_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    b = ctx.body
    label = labels.update_label(ctx.db, inbox, label_id, name=b.name, color=b.color, type_=b.type,
                                actor=ctx.principal.id)
    return _render(ctx, inbox, label)


@endpoint(bp, "/v1/labels/<label_id>/", "DELETE", auth=WRITE, tag="labels", status=204,
          summary="Delete a label; its name is removed from every message and contact of the inbox")
def delete_label(ctx: Ctx, label_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    labels.delete_label(ctx.db, inbox, label_id, actor=ctx.principal.id)
    return Reply(204)
