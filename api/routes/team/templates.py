"""Contract section 10, templates (issue 16): the tenant's reply templates with `{placeholder}`
variables. Owners and admins write them (a session); any session or agent token of the tenant
reads and renders them. The rules live in appliance/services/team/templates.py."""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import ANY_TOKEN, USER, Ctx, PlainText, Reply, StrictModel, endpoint
from appliance.services.team import templates

bp = Blueprint("templates", __name__)
TemplateValue = str | int | float | None  # a value used in the subject: one line (the service says so)
BODY_HELP = "Placeholders are {name}; {{ and }} are literal braces."


class TemplateCreate(StrictModel):
    name: PlainText = Field(min_length=1, max_length=200)
    subject: PlainText = Field("", max_length=998, description="One line. " + BODY_HELP)
    text_body: str = Field("", json_schema_extra={"x-multiline": True}, description=BODY_HELP)
    html_body: str = Field("", json_schema_extra={"x-multiline": True},
                           description=BODY_HELP + " Values are HTML-escaped here.")


class TemplateUpdate(StrictModel):
    name: PlainText | None = Field(None, min_length=1, max_length=200)
    subject: PlainText | None = Field(None, max_length=998, description="One line.")
    text_body: str | None = Field(None, json_schema_extra={"x-multiline": True})
    html_body: str | None = Field(None, json_schema_extra={"x-multiline": True})


class TemplateQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=r"^tpl_[0-9A-HJKMNP-TV-Z]{26}$")


class RenderBody(StrictModel):
    values: dict[str, TemplateValue] = Field(default_factory=dict, max_length=200,
                                             description="A value for every variable of the template.")


class TemplateObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: str
    name: str
    subject: str
    text_body: str
    html_body: str
    variables: list[str] = Field(description="The placeholder names found, in order.")
    created_at: str
    updated_at: str


class TemplateList(BaseModel):
    results: list[TemplateObject]
    cursor: str | None


class Rendered(BaseModel):
    subject: str
    text_body: str
    html_body: str


def _input(body: TemplateCreate | TemplateUpdate) -> templates.TemplateInput:
    return templates.TemplateInput(name=body.name, subject=body.subject, text_body=body.text_body,
                                   html_body=body.html_body)


@endpoint(bp, "/v1/templates/", "POST", auth=USER, tag="templates", body=TemplateCreate, response=TemplateObject,
          status=201, summary="Create a reply template of the tenant (owners and admins)")
def create_template(ctx: Ctx) -> Reply:
    return Reply(201, templates.template_to_dict(templates.create_template(ctx.db, ctx.principal, _input(ctx.body))))


@endpoint(bp, "/v1/templates/", "GET", auth=ANY_TOKEN, tag="templates", query=TemplateQuery, response=TemplateList,
          summary="The tenant's templates with their variables (any session or agent token of the tenant)")
def list_templates(ctx: Ctx) -> dict:
    page, cursor = templates.list_templates(ctx.db, ctx.principal, limit=ctx.query.limit, cursor=ctx.query.cursor)
    return {"results": [templates.template_to_dict(t) for t in page], "cursor": cursor}


@endpoint(bp, "/v1/templates/<template_id>/", "GET", auth=ANY_TOKEN, tag="templates", response=TemplateObject,
          summary="One template with its variables")
def get_template(ctx: Ctx, template_id: str) -> dict:
    return templates.template_to_dict(templates.get_template(ctx.db, ctx.principal, template_id))


@endpoint(bp, "/v1/templates/<template_id>/", "PATCH", auth=USER, tag="templates", body=TemplateUpdate,
          response=TemplateObject, summary="Change a template (owners and admins)")
def update_template(ctx: Ctx, template_id: str) -> dict:
    return templates.template_to_dict(templates.update_template(ctx.db, ctx.principal, template_id, _input(ctx.body)))


@endpoint(bp, "/v1/templates/<template_id>/", "DELETE", auth=USER, tag="templates", status=204,
          summary="Delete a template (owners and admins)")
def delete_template(ctx: Ctx, template_id: str) -> Reply:
    templates.delete_template(ctx.db, ctx.principal, template_id)
    return Reply(204)


@endpoint(bp, "/v1/templates/<template_id>/render/", "POST", auth=ANY_TOKEN, tag="templates", body=RenderBody,
          response=Rendered, summary="The template filled with values: 400 template_value_missing names a missing "
                                     "one; values are HTML-escaped in html_body")
def render_template(ctx: Ctx, template_id: str) -> dict:
    return templates.render(templates.get_template(ctx.db, ctx.principal, template_id), ctx.body.values)
