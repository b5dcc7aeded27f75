"""scheduler: alert offsets, the deliveries of scheduled events made before they are due

An alert with an `offset` gets a scheduled event (a `schedules` row) `offset` before its due
time, before the event exists: its `webhook_deliveries` row names the schedule row and the due
time it was made for (unique per alert, row and due time: one delivery per firing) and carries
the event it sends (`data`).

Revision ID: 0020_scheduler
Revises: 0019_workspace_foundation
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0020_scheduler'
down_revision = '0019_workspace_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('schedule_due_at', appliance.models.base.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('data', sa.JSON(), nullable=True))
        batch_op.create_index('uq_webhook_deliveries_schedule', ['alert_id', 'schedule_id', 'schedule_due_at'],
                              unique=True)


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('uq_webhook_deliveries_schedule')
        batch_op.drop_column('data')
        batch_op.drop_column('schedule_due_at')
        batch_op.drop_column('schedule_id')
