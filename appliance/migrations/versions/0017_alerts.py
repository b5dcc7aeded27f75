"""alerts: alerts, webhook deliveries, the tailer's cursor and a minimal tasks table (issue 15)

Four tables: alerts (an inbox's subscription to event types, delivered as a signed webhook or
as a task; the whsec_ secret sealed with the appliance key), webhook_deliveries (one row per
event and alert, unique, with its attempts and the next due time), alert_cursors (the last
event seq turned into deliveries) and tasks (contract section 12, minimal: written by task
alerts, adopted by the calendar and tasks area).

Revision ID: 0017_alerts
Revises: 0016_tenancy_roles
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0017_alerts'
down_revision = '0016_tenancy_roles'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('delivery_type', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=2048), nullable=True),
    sa.Column('task_summary', sa.String(length=500), nullable=True),
    sa.Column('offset_value', sa.Integer(), nullable=True),
    sa.Column('offset_unit', sa.String(length=16), nullable=True),
    sa.Column('filter', sa.JSON(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('backoff', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=200), nullable=True),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('previous_secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('previous_secret_until', _dt(timezone=True), nullable=True),
    sa.Column('failing_since', _dt(timezone=True), nullable=True),
    sa.Column('last_success_at', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('alerts', 'tenant_id', 'tenants'),
    _fk('alerts', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_alerts_inbox_id', ['inbox_id', 'id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('alert_id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=True),
    sa.Column('webhook_id', sa.String(length=100), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', _dt(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('claimed_until', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('webhook_deliveries', 'tenant_id', 'tenants'),
    _fk('webhook_deliveries', 'alert_id', 'alerts'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('alert_id', 'event_id', name='uq_webhook_deliveries_alert_event')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_alert_id', ['alert_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_tenant_id', ['tenant_id'], unique=False)

    op.create_table('alert_cursors',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_alert_cursors'))
    )

    op.create_table('tasks',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('due', _dt(timezone=True), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('related_type', sa.String(length=16), nullable=True),
    sa.Column('related_id', sa.String(length=40), nullable=True),
    sa.Column('source_alert_id', sa.String(length=40), nullable=True),
    sa.Column('source_event_id', sa.String(length=40), nullable=True),
    sa.Column('completed_at', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('tasks', 'tenant_id', 'tenants'),
    _fk('tasks', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_tasks_inbox_id', ['inbox_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_tasks_source', ['source_alert_id', 'source_event_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_source')
        batch_op.drop_index('ix_tasks_inbox_id')
        batch_op.drop_index('ix_tasks_tenant_id')
    op.drop_table('tasks')
    op.drop_table('alert_cursors')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_tenant_id')
        batch_op.drop_index('ix_webhook_deliveries_alert_id')
        batch_op.drop_index('ix_webhook_deliveries_due')
    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_inbox_id')
        batch_op.drop_index('ix_alerts_tenant_id')
    op.drop_table('alerts')
