"""Contract section 14, workflows (issue 20): an inbox's rules, their runs and the dry run.

Agent tokens act on their own inbox's workflows; sessions name the inbox (inbox_id) when creating
and may name it elsewhere. The `whsec_` secret that signs a workflow's webhook actions is in the
create answer only. The rules live in appliance/services/automation/workflows.py; the worker runs
them (workflow_runner.py).
"""
from __future__ import annotations

from typing import Literal, Union

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.automation import recipes, workflows

bp = Blueprint("workflows", __name__)
READ, WRITE = scope("workflows:read"), scope("workflows:write")
Op = Literal["eq", "neq", "contains", "not_contains", "matches", "in", "exists", "gt", "lt"]
Scalar = Union[PlainText, int, float, bool, None]
ActionType = Literal["webhook", "email.add_label", "email.remove_label", "email.mark_read", "email.forward",
                     "email.reply", "task", "hold"]
WORKFLOW_ID = r"^wfl_[0-9A-HJKMNP-TV-Z]{26}$"


class Trigger(StrictModel):
    type: Literal["email_received", "email_sent", "label_applied", "thread_assigned", "event"] = "email_received"
    event_type: PlainText | None = Field(None, max_length=100, description="With type `event`: a registered type.")


class Condition(StrictModel):
    field: PlainText = Field(max_length=200, description="from_address, from_domain, to_address, subject, body, "
                             "has_attachments, label_id, authentication.dmarc, enrichment.phishing, type, "
                             "header:<Name> or payload.<key>.")
    op: Op
    value: Scalar | list[Scalar] = Field(None, description="`in`: a list; `matches`: a regular expression "
                                                           "(run with a time budget); `gt`/`lt`: a number.")


class Target(StrictModel):
    type: ActionType
    label: PlainText | None = Field(None, max_length=100, description="email.add_label / email.remove_label.")
    summary: PlainText | None = Field(None, max_length=500, description="task: `{field}` placeholders allowed.")
    to: PlainText | None = Field(None, max_length=320, description="email.forward: the address.")
    template_id: PlainText | None = Field(None, max_length=40, description="email.reply: a template (tpl_).")
    subject: PlainText | None = Field(None, max_length=300, description="email.reply without a template.")
    text_body: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True},
                                  description="email.reply without a template.")
    url: PlainText | None = Field(None, max_length=2048, description="webhook: the https:// URL.")
    event_type: PlainText | None = Field(None, max_length=100, description="webhook: the body's `type`.")


class Write(StrictModel):
    target: Target


class WorkflowCreate(StrictModel):
    name: PlainText = Field(max_length=200)
    trigger: Trigger
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    writes: list[Write] = Field(max_length=10)
    enabled: bool = True


class WorkflowUpdate(StrictModel):
    name: PlainText | None = Field(None, max_length=200)
    trigger: Trigger | None = None
    conditions: list[Condition] | None = Field(None, max_length=20)
    writes: list[Write] | None = Field(None, max_length=10)
    enabled: bool | None = None


class WorkflowQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=WORKFLOW_ID)


class RunQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=r"^run_[0-9A-HJKMNP-TV-Z]{26}$")


class TestBody(StrictModel):
    message_id: PlainText = Field(max_length=40)


class WorkflowObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_id: str
    inbox_id: str
    name: str
    trigger: dict
    conditions: list[dict]
    writes: list[dict]
    enabled: bool
    created_at: str
    updated_at: str
    secret: str | None = Field(None, description="whsec_… signing its webhook actions: only in the create answer.")


class WorkflowList(BaseModel):
    results: list[WorkflowObject]
    cursor: str | None


class RunObject(BaseModel):
    run_id: str
    workflow_id: str
    event_id: str
    matched: bool
    status: str = Field(description="completed, failed, or skipped (the conditions did not match).")
    actions: list[dict] = Field(description="[{type, outcome, error}] in the workflow's order.")
    started_at: str


class RunList(BaseModel):
    results: list[RunObject]
    cursor: str | None


class TestAnswer(BaseModel):
    workflow_id: str
    message_id: str
    matched: bool
    conditions: list[dict]
    notes: list[str]
    actions: list[dict]


class RecipeBody(StrictModel):
    recipe: str = Field(max_length=65536, json_schema_extra={"x-multiline": True},
                        description="The TOML recipe: schema_version, kind = \"gent.workflow_recipe\", inputs, "
                                    "resources (docs/workflows.md).")
    inputs: dict[str, Scalar] = Field(default_factory=dict, max_length=100,
                                      description="A value for each of the recipe's inputs.")


class Diagnostic(BaseModel):
    code: str = Field(description="missing_input, unknown_input, secret_in_recipe, unsupported_resource, "
                                  "invalid_resource, invalid_toml, wrong_kind, unexpected_input, …")
    message: str
    path: str
    severity: Literal["error", "warning"]


class RecipeCheck(BaseModel):
    valid: bool
    diagnostics: list[Diagnostic]


class RecipeInstalled(BaseModel):
    resources: list[dict] = Field(description="[{type, key, id, name}] in install order (sequences, then "
                                              "workflows); a workflow's `secret` is shown only here.")
    diagnostics: list[Diagnostic] = Field(description="Warnings only (errors install nothing).")


def _input(body: WorkflowCreate | WorkflowUpdate) -> workflows.WorkflowInput:
    dump = body.model_dump(exclude_none=True)
    writes = [{"target": {k: v for k, v in w["target"].items() if v is not None}} for w in dump.get("writes", [])] \
        if body.writes is not None else None
    conditions = [c.model_dump() for c in body.conditions] if body.conditions is not None else None
    return workflows.WorkflowInput(name=body.name, trigger=dump.get("trigger"), conditions=conditions,
                                   writes=writes, enabled=body.enabled)


@endpoint(bp, "/v1/workflows/", "POST", auth=WRITE, tag="workflows", body=WorkflowCreate, response=WorkflowObject,
          status=201, summary="Create a workflow; the whsec_ secret of its webhook actions is shown only here")
def create_workflow(ctx: Ctx) -> dict:
    workflow, secret = workflows.create_workflow(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, _input(ctx.body))
    return workflows.workflow_to_dict(workflow, secret)


@endpoint(bp, "/v1/workflows/", "GET", auth=READ, tag="workflows", query=WorkflowQuery, response=WorkflowList,
          summary="The inbox's workflows, oldest first")
def list_workflows(ctx: Ctx) -> dict:
    q = ctx.query
    rows = workflows.list_workflows(ctx.db, ctx.principal, ctx.inbox_id, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [workflows.workflow_to_dict(w) for w in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/workflows/<workflow_id>/", "GET", auth=READ, tag="workflows", response=WorkflowObject,
          summary="One workflow")
def get_workflow(ctx: Ctx, workflow_id: str) -> dict:
    return workflows.workflow_to_dict(workflows.get_workflow(ctx.db, ctx.principal, workflow_id, ctx.inbox_id))


@endpoint(bp, "/v1/workflows/<workflow_id>/", "PATCH", auth=WRITE, tag="workflows", body=WorkflowUpdate,
          response=WorkflowObject, summary="Change a workflow (any create field), enable or disable it")
def update_workflow(ctx: Ctx, workflow_id: str) -> dict:
    workflow = workflows.update_workflow(ctx.db, ctx.settings, ctx.principal, workflow_id, ctx.inbox_id,
                                         _input(ctx.body))
    return workflows.workflow_to_dict(workflow)


@endpoint(bp, "/v1/workflows/<workflow_id>/", "DELETE", auth=WRITE, tag="workflows", status=204,
          summary="Delete a workflow, its runs and its queued webhook actions")
def delete_workflow(ctx: Ctx, workflow_id: str) -> Reply:
    workflows.delete_workflow(ctx.db, ctx.principal, workflow_id, ctx.inbox_id)
    return Reply(204)


@endpoint(bp, "/v1/workflows/<workflow_id>/runs/", "GET", auth=READ, tag="workflows", query=RunQuery,
          response=RunList, summary="The workflow's runs, newest first: matched or not, each action's outcome")
def list_runs(ctx: Ctx, workflow_id: str) -> dict:
    q = ctx.query
    rows = workflows.list_runs(ctx.db, ctx.principal, workflow_id, ctx.inbox_id, before=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [workflows.run_to_dict(r) for r in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/workflows/<workflow_id>/test/", "POST", auth=READ, tag="workflows", body=TestBody,
          response=TestAnswer, summary="Dry run: what the workflow would do with a message, changing nothing")
def test_workflow(ctx: Ctx, workflow_id: str) -> dict:
    return workflows.test_workflow(ctx.db, ctx.settings, ctx.principal, workflow_id, ctx.inbox_id,
                                   ctx.body.message_id)


@endpoint(bp, "/v1/workflows/recipes/validate/", "POST", auth=WRITE, tag="workflows", body=RecipeBody,
          response=RecipeCheck, summary="Check a TOML recipe and its inputs; diagnostics only, creates nothing")
def validate_recipe(ctx: Ctx) -> dict:
    outcome = recipes.validate(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, ctx.body.recipe, ctx.body.inputs)
    return {"valid": outcome.ok, "diagnostics": outcome.diagnostics}


@endpoint(bp, "/v1/workflows/recipes/install/", "POST", auth=WRITE, tag="workflows", body=RecipeBody,
          response=RecipeInstalled, status=201,
          summary="Install a TOML recipe: sequences, then workflows, all or nothing (400 recipe_invalid)")
def install_recipe(ctx: Ctx) -> dict:
    outcome = recipes.install(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, ctx.body.recipe, ctx.body.inputs)
    return {"resources": outcome.resources, "diagnostics": outcome.diagnostics}
