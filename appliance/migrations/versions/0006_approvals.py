"""approvals: held agent actions (issue 8)

One table: an approval per held action (a send by a token whose requires_approval covers
email:send), with its status, expiry and who decided it.

Revision ID: 0006_approvals
Revises: 0005_operations
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0006_approvals'
down_revision = '0005_operations'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approvals',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('action_type', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=40), nullable=True),
    sa.Column('token_id', sa.String(length=40), nullable=True),
    sa.Column('token_label', sa.String(length=200), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('queued_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=40), nullable=True),
    sa.Column('decided_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_approvals_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_approvals_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals'))
    )
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.create_index('ix_approvals_tenant_id', ['tenant_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_approvals_inbox_id', ['inbox_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_approvals_due', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_approvals_resource_id', ['resource_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_index('ix_approvals_resource_id')
        batch_op.drop_index('ix_approvals_due')
        batch_op.drop_index('ix_approvals_inbox_id')
        batch_op.drop_index('ix_approvals_tenant_id')

    op.drop_table('approvals')
