"""operations: process heartbeats (issue 7)

Each long-running process (web, smtp, worker) writes its row every heartbeat_interval seconds;
`gentbox doctor` reads them to tell which kinds of process are up.

Revision ID: 0005_operations
Revises: 0004_message_read_indexes
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0005_operations'
down_revision = '0004_message_read_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('process_heartbeats',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('beat_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_process_heartbeats'))
    )
    with op.batch_alter_table('process_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_process_heartbeats_kind'), ['kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('process_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_process_heartbeats_kind'))
    op.drop_table('process_heartbeats')
