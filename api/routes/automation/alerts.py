"""Contract section 8, alerts (issue 15): webhooks and task deliveries of an inbox's events.

Agent tokens act on their own inbox's alerts; sessions name the inbox (inbox_id) when creating
and may name it elsewhere. The `whsec_` secret is in the create and rotate answers only. The
rules live in appliance/services/automation/alerts.py; the worker sends the deliveries.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.automation import alerts

bp = Blueprint("alerts", __name__)
READ, WRITE = scope("alerts:read"), scope("alerts:write")
ALERT_CURSOR = r"^alr_[0-9A-HJKMNP-TV-Z]{26}$"
DeliveryStatus = Literal["pending", "succeeded", "failed", "exhausted"]
FilterValue = PlainText | int | bool | None


class AlertDelivery(StrictModel):
    type: Literal["webhook", "task"] = "webhook"
    target: PlainText | None = Field(None, max_length=2048, description="webhook: the https:// URL to POST to.")
    summary: PlainText | None = Field(None, max_length=500,
                                      description="task: the task's summary; {field} is replaced by the event "
                                                  "payload's field.")


class AlertDeliveryChange(StrictModel):
    type: Literal["webhook", "task"] | None = None
    target: PlainText | None = Field(None, max_length=2048)
    summary: PlainText | None = Field(None, max_length=500)


class AlertOffset(StrictModel):
    """Both fields, or neither (no offset); the service names a missing one."""

    value: int | None = Field(None, ge=0, le=100_000)
    unit: Literal["minutes", "hours", "days"] | None = None


class AlertCreate(StrictModel):
    # At least one: the service says so (naming the field), after the schema's type checks.
    events: list[str] = Field(max_length=64, description="Registered event types (GET /v1/events/types/), "
                                                         "at least one.")
    delivery: AlertDelivery
    offset: AlertOffset | None = Field(None, description="Calendar and anniversary types only (their offset_units).")
    filter: dict[str, FilterValue] = Field(default_factory=dict, max_length=20,
                                           description="Payload fields and the values they must equal.")
    threshold: int | None = Field(None, ge=1, le=100, description="Percent, for cap.reached.")
    retries: int = Field(3, ge=0, le=10)
    backoff: Literal["immediate", "fixed", "exponential"] = "exponential"
    enabled: bool = True


class AlertUpdate(StrictModel):
    events: list[str] | None = Field(None, max_length=64)
    delivery: AlertDeliveryChange | None = None
    offset: AlertOffset | None = None
    filter: dict[str, FilterValue] | None = Field(None, max_length=20)
    threshold: int | None = Field(None, ge=1, le=100)
    retries: int | None = Field(None, ge=0, le=10)
    backoff: Literal["immediate", "fixed", "exponential"] | None = None
    enabled: bool | None = None


class AlertQuery(StrictModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=ALERT_CURSOR)


class DeliveryQuery(StrictModel):
    status: DeliveryStatus | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=r"^dlv_[0-9A-HJKMNP-TV-Z]{26}$")


class AlertObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_id: str
    inbox_id: str
    events: list[str]
    delivery: dict
    offset: dict | None
    filter: dict
    threshold: int | None
    retries: int
    backoff: str
    enabled: bool
    disabled_reason: str | None = Field(description="manual, gone (the target answered 410) or failing (5 days).")
    secret_rotated_until: str | None = Field(description="Until when the previous secret signs too.")
    failing_since: str | None
    last_success_at: str | None
    created_at: str
    updated_at: str
    secret: str | None = Field(None, description="whsec_…: only in the answer that created it.")


class AlertList(BaseModel):
    results: list[AlertObject]
    cursor: str | None


class SecretAnswer(BaseModel):
    alert_id: str
    secret: str = Field(description="The new whsec_ secret, shown this once.")
    previous_valid_until: str | None = Field(description="The previous secret signs too until then (24 h).")


class DeliveryObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery_id: str
    alert_id: str
    event_id: str
    webhook_id: str = Field(description="The webhook-id header: the same on every retry.")
    attempt: int
    status: DeliveryStatus
    response_status: int | None
    duration_ms: int | None
    error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str


class DeliveryList(BaseModel):
    results: list[DeliveryObject]
    cursor: str | None


def _input(body: AlertCreate | AlertUpdate) -> alerts.AlertInput:
    delivery = body.delivery
    return alerts.AlertInput(
        events=body.events, delivery_type=delivery.type if delivery else None,
        target=delivery.target if delivery else None, summary=delivery.summary if delivery else None,
        offset=body.offset.model_dump(exclude_none=True) if body.offset else None, filter=body.filter, threshold=body.threshold,
        retries=body.retries, backoff=body.backoff, enabled=body.enabled)


@endpoint(bp, "/v1/alerts/", "POST", auth=WRITE, tag="alerts", body=AlertCreate, response=AlertObject, status=201,
          summary="Create an alert; a webhook's whsec_ secret is shown only in this answer")
def create_alert(ctx: Ctx) -> dict:
    alert, secret = alerts.create_alert(ctx.db, ctx.settings, ctx.principal, ctx.inbox_id, _input(ctx.body))
    return alerts.alert_to_dict(alert, secret)


@endpoint(bp, "/v1/alerts/", "GET", auth=READ, tag="alerts", query=AlertQuery, response=AlertList,
          summary="The inbox's alerts (never their secrets), oldest first")
def list_alerts(ctx: Ctx) -> dict:
    q = ctx.query
    rows = alerts.list_alerts(ctx.db, ctx.principal, ctx.inbox_id, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [alerts.alert_to_dict(a) for a in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/alerts/<alert_id>/", "GET", auth=READ, tag="alerts", response=AlertObject,
          summary="One alert and its state")
def get_alert(ctx: Ctx, alert_id: str) -> dict:
    return alerts.alert_to_dict(alerts.get_alert(ctx.db, ctx.principal, alert_id, ctx.inbox_id))


@endpoint(bp, "/v1/alerts/<alert_id>/", "PATCH", auth=WRITE, tag="alerts", body=AlertUpdate, response=AlertObject,
          summary="Change an alert (any create field), enable or disable it")
def update_alert(ctx: Ctx, alert_id: str) -> dict:
    alert, secret = alerts.update_alert(ctx.db, ctx.settings, ctx.principal, alert_id, ctx.inbox_id,
                                        _input(ctx.body))
    return alerts.alert_to_dict(alert, secret)


@endpoint(bp, "/v1/alerts/<alert_id>/", "DELETE", auth=WRITE, tag="alerts", status=204,
          summary="Delete an alert; its pending deliveries are dropped")
def delete_alert(ctx: Ctx, alert_id: str) -> Reply:
    alerts.delete_alert(ctx.db, ctx.principal, alert_id, ctx.inbox_id)
    return Reply(204)


@endpoint(bp, "/v1/alerts/<alert_id>/rotate-secret/", "POST", auth=WRITE, tag="alerts", response=SecretAnswer,
          summary="A new signing secret, shown once; the old one keeps signing too for 24 h")
def rotate_secret(ctx: Ctx, alert_id: str) -> dict:
    alert, secret = alerts.rotate_secret(ctx.db, ctx.settings, ctx.principal, alert_id, ctx.inbox_id)
    return {"alert_id": alert.id, "secret": secret,
            "previous_valid_until": alerts.alert_to_dict(alert)["secret_rotated_until"]}


@endpoint(bp, "/v1/alerts/<alert_id>/test/", "POST", auth=WRITE, tag="alerts", response=DeliveryObject, status=202,
          summary="Queue one webhook.test delivery to the alert's target")
def test_alert(ctx: Ctx, alert_id: str) -> Reply:
    delivery = alerts.request_test(ctx.db, ctx.principal, alert_id, ctx.inbox_id)
    return Reply(202, alerts.delivery_to_dict(delivery))


@endpoint(bp, "/v1/alerts/<alert_id>/deliveries/", "GET", auth=READ, tag="alerts", query=DeliveryQuery,
          response=DeliveryList, summary="The alert's deliveries, newest first: attempts, responses, errors")
def list_deliveries(ctx: Ctx, alert_id: str) -> dict:
    q = ctx.query
    rows = alerts.list_deliveries(ctx.db, ctx.principal, alert_id, ctx.inbox_id, status=q.status,
                                  before=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [alerts.delivery_to_dict(d) for d in page],
            "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/alerts/<alert_id>/deliveries/<delivery_id>/retry/", "POST", auth=WRITE, tag="alerts",
          response=DeliveryObject, status=202, summary="Send a delivery again now (same webhook-id)")
def retry_delivery(ctx: Ctx, alert_id: str, delivery_id: str) -> Reply:
    delivery = alerts.retry_delivery(ctx.db, ctx.principal, alert_id, delivery_id, ctx.inbox_id)
    return Reply(202, alerts.delivery_to_dict(delivery))
