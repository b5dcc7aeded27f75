"""tenancy_roles: inbox grants for members (issue 14.15)

One table: inbox_members, the inboxes a `member` of a tenant may read and send in (owners and
admins use every inbox of their tenant). It carries tenant_id, so the tenancy helper
(appliance/services/tenancy.py) scopes it like every other tenant row. The existing child
tables without tenant_id (attachments, message_raw, message_search, dkim_keys,
outbound_recipients, user_sessions, user_totp) are scoped through their parent's foreign key.

Revision ID: 0016_tenancy_roles
Revises: 0015_event_seq
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0016_tenancy_roles'
down_revision = '0015_event_seq'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox_members',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('granted_by', sa.String(length=40), nullable=True),
    sa.Column('granted_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_inbox_members_inbox_id_inboxes'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_inbox_members_user_id_users'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inbox_members_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('inbox_id', 'user_id', name=op.f('pk_inbox_members'))
    )
    with op.batch_alter_table('inbox_members', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_members_user_id', ['user_id', 'inbox_id'], unique=False)
        batch_op.create_index('ix_inbox_members_tenant_id', ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox_members', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_members_tenant_id')
        batch_op.drop_index('ix_inbox_members_user_id')
    op.drop_table('inbox_members')
