"""workflows: workflows, their runs (unique per event and workflow) and their queued webhook actions (issue 20)

`workflows` (trigger, conditions and actions as JSON, the sealed webhook secret), `workflow_runs`
(one row per event and workflow: each event runs each workflow at most once) and
`workflow_deliveries` (a run's webhook actions, sent by the worker with retries).

Revision ID: 0031_workflows
Revises: 0030_files
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0031_workflows'
down_revision = '0030_files'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _owned(table: str) -> list:
    return [sa.Column('id', sa.String(length=40), nullable=False),
            sa.Column('tenant_id', sa.String(length=40), nullable=False),
            sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_{table}_tenant_id_tenants'),
                                    ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}'))]


def upgrade() -> None:
    op.create_table('workflows', *_owned('workflows'),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.JSON(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('writes', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_workflows_inbox_id_inboxes'), ondelete='CASCADE'),
    )
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.create_index('ix_workflows_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_workflows_inbox_id', ['inbox_id', 'id'], unique=False)
    op.create_table('workflow_runs', *_owned('workflow_runs'),
    sa.Column('workflow_id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=True),
    sa.Column('matched', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('started_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_workflow_runs_workflow_id_workflows'),
                            ondelete='CASCADE'),
    sa.UniqueConstraint('workflow_id', 'event_id', name='uq_workflow_runs_workflow_event'),
    )
    with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
        batch_op.create_index('ix_workflow_runs_workflow_id', ['workflow_id', 'id'], unique=False)
        batch_op.create_index('ix_workflow_runs_tenant_id', ['tenant_id'], unique=False)
    op.create_table('workflow_deliveries', *_owned('workflow_deliveries'),
    sa.Column('workflow_id', sa.String(length=40), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('action_index', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('webhook_id', sa.String(length=100), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', _dt(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('claimed_until', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'],
                            name=op.f('fk_workflow_deliveries_workflow_id_workflows'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_workflow_deliveries_run_id_workflow_runs'),
                            ondelete='CASCADE'),
    sa.UniqueConstraint('run_id', 'action_index', name='uq_workflow_deliveries_run_action'),
    )
    with op.batch_alter_table('workflow_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_workflow_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_workflow_deliveries_tenant_id', ['tenant_id'], unique=False)
        batch_op.create_index('ix_workflow_deliveries_workflow_id', ['workflow_id'], unique=False)


def downgrade() -> None:
    op.drop_table('workflow_deliveries')
    op.drop_table('workflow_runs')
    op.drop_table('workflows')
