"""Workflows (issue 20, contract section 14): rules that react to an inbox's events.

- `workflows`: one rule of one inbox: a trigger, conditions and actions (`writes`), kept as JSON
  in the contract's shape; the `whsec_` secret that signs its webhook actions, sealed like an
  alert's.
- `workflow_runs`: one event seen by one workflow, unique on (workflow, event): each event runs
  each workflow at most once. Written in the transaction of the run's local effects (labels,
  mark read, task, hold) and of the sends it queued, so a crash leaves either all or none.
- `workflow_deliveries`: the webhook actions of runs, queued durably in the run's transaction
  and sent by the worker with retries (the alerts' signing and address checks).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime

TRIGGERS = ("email_received", "email_sent", "label_applied", "thread_assigned", "event")
RUN_STATUSES = ("completed", "failed", "skipped")


class Workflow(Base):
    __tablename__ = "workflows"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # wfl_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[dict] = mapped_column(JSON, default=dict)  # {"type": ..., "event_type": ...}
    conditions: Mapped[list] = mapped_column(JSON, default=list)  # [{field, op, value}]
    writes: Mapped[list] = mapped_column(JSON, default=list)  # [{target: {type, ...}}]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Sealed with security.seal(purpose "workflow-secrets", context = workflow id).
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_workflows_tenant_id", Workflow.tenant_id, Workflow.id)
Index("ix_workflows_inbox_id", Workflow.inbox_id, Workflow.id)


class WorkflowRun(Base):
    """One event seen by one workflow: whether it matched and what each action came to."""

    __tablename__ = "workflow_runs"
    __table_args__ = (UniqueConstraint("workflow_id", "event_id", name="uq_workflow_runs_workflow_event"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # run_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    matched: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="completed")
    actions: Mapped[list] = mapped_column(JSON, default=list)  # [{type, outcome, error}]
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_workflow_runs_workflow_id", WorkflowRun.workflow_id, WorkflowRun.id)
Index("ix_workflow_runs_tenant_id", WorkflowRun.tenant_id)


class WorkflowDelivery(Base):
    """A webhook action of one run: its attempts so far and when the next one is due."""

    __tablename__ = "workflow_deliveries"
    __table_args__ = (UniqueConstraint("run_id", "action_index", name="uq_workflow_deliveries_run_action"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # dlv_
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    action_index: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # {type, data}: what is POSTed
    webhook_id: Mapped[str] = mapped_column(String(100))  # the same on every retry
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|succeeded|failed|exhausted
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_workflow_deliveries_due", WorkflowDelivery.status, WorkflowDelivery.next_attempt_at)
Index("ix_workflow_deliveries_tenant_id", WorkflowDelivery.tenant_id)
Index("ix_workflow_deliveries_workflow_id", WorkflowDelivery.workflow_id)
