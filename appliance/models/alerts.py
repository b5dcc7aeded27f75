"""Alerts (issue 15): events delivered to the outside as signed webhooks or as tasks.

An alert subscribes an inbox to event types. For a webhook alert, the delivery engine turns each
matching event into one `webhook_deliveries` row (unique per event and alert: at least once, and
one `webhook-id` for every retry) and sends it; `alert_cursors` remembers the last event seq the
tailer has turned into rows. The `whsec_` secret is sealed with the appliance key like DKIM keys;
after a rotation the previous one keeps signing until `previous_secret_until` (24 h).

`tasks` is the minimal task table of contract section 12, written by task alerts; the calendar
and tasks area adopts it.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

DELIVERY_TYPES = ("webhook", "task")
BACKOFFS = ("immediate", "fixed", "exponential")
OFFSET_UNITS = ("minutes", "hours", "days")
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "exhausted")
TASK_STATUSES = ("needs_action", "in_progress", "completed", "cancelled")


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # alr_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    events: Mapped[list] = mapped_column(JSON, default=list)  # registered event types
    delivery_type: Mapped[str] = mapped_column(String(16))  # webhook | task
    target: Mapped[str | None] = mapped_column(String(2048), nullable=True)  # webhook URL
    task_summary: Mapped[str | None] = mapped_column(String(500), nullable=True)  # `{field}` template
    offset_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offset_unit: Mapped[str | None] = mapped_column(String(16), nullable=True)  # minutes|hours|days
    filter: Mapped[dict] = mapped_column(JSON, default=dict)  # payload field -> required value
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)  # percent, cap.reached
    retries: Mapped[int] = mapped_column(Integer, default=3)  # 0-10
    backoff: Mapped[str] = mapped_column(String(16), default="exponential")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Sealed with security.seal(purpose "webhook-secrets", context = alert id); None for tasks.
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_alerts_tenant_id", Alert.tenant_id, Alert.id)
Index("ix_alerts_inbox_id", Alert.inbox_id, Alert.id)


class WebhookDelivery(Base):
    """One event (or a test) to one alert: its attempts so far and when the next one is due."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "event_id", name="uq_webhook_deliveries_alert_event"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # dlv_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))  # evt_ (a webhook.test event included)
    event_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Standard Webhooks `webhook-id`: the same on every retry of one event to one alert.
    webhook_id: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # attempts made so far
    status: Mapped[str] = mapped_column(String(16), default="pending")
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An alert's `offset` delivery of a scheduled event (migration 0020): made before the event
    # exists, for one firing (schedule row, due time) of it, carrying the event it sends.
    schedule_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    schedule_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_webhook_deliveries_schedule", WebhookDelivery.alert_id, WebhookDelivery.schedule_id,
      WebhookDelivery.schedule_due_at, unique=True)
Index("ix_webhook_deliveries_due", WebhookDelivery.status, WebhookDelivery.next_attempt_at)
Index("ix_webhook_deliveries_alert_id", WebhookDelivery.alert_id, WebhookDelivery.id)
Index("ix_webhook_deliveries_tenant_id", WebhookDelivery.tenant_id)


class AlertCursor(Base):
    """The last event seq a tailer has turned into deliveries (one row per tailer name)."""

    __tablename__ = "alert_cursors"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def webhook_msg_id(event_id: str, alert_id: str) -> str:
    """The Standard Webhooks message id of one event to one alert (stable across retries)."""
    return f"msg_{event_id}_{alert_id}"


class Task(Base):
    """A task (contract section 12), minimal: written by task alerts, adopted by the tasks area."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # tsk_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    summary: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1-9
    status: Mapped[str] = mapped_column(String(16), default="needs_action")
    related_type: Mapped[str | None] = mapped_column(String(16), nullable=True)  # message/thread/…
    related_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_alert_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_event_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_tasks_tenant_id", Task.tenant_id, Task.id)
Index("ix_tasks_inbox_id", Task.inbox_id, Task.status, Task.id)
Index("ix_tasks_inbox_due", Task.inbox_id, Task.due)  # the agenda's and the task list's due order
# A task alert makes at most one task per event, even when two workers deliver it.
Index("ix_tasks_source", Task.source_alert_id, Task.source_event_id, unique=True)
