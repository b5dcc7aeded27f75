"""broadcast: broadcasts, their recipients, unsubscribed addresses, and outbound_queue.priority (issue 16 point 2)

`broadcasts` (one per POST /v1/messages/broadcast/), `broadcast_recipients` (each address: its
message or why it was skipped), `unsubscribes` (RFC 8058 one-click, unique per inbox and address),
and `outbound_queue.priority` (broadcast rows are claimed after due normal rows).

Revision ID: 0029_broadcast
Revises: 0028_audit
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0029_broadcast'
down_revision = '0028_audit'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def upgrade() -> None:
    op.create_table('broadcasts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('label_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_broadcasts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_broadcasts_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcasts'))
    )
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.create_index('ix_broadcasts_tenant_id', ['tenant_id', 'id'], unique=False)
    op.create_table('broadcast_recipients',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('broadcast_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('skip_reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_recipients_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_recipients'))
    )
    with op.batch_alter_table('broadcast_recipients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcast_recipients_broadcast_id'), ['broadcast_id'], unique=False)
    op.create_table('unsubscribes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_unsubscribes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_unsubscribes_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unsubscribes'))
    )
    with op.batch_alter_table('unsubscribes', schema=None) as batch_op:
        batch_op.create_index('uq_unsubscribes_inbox_address', ['inbox_id', 'address'], unique=True)
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.drop_column('priority')
    op.drop_table('unsubscribes')
    op.drop_table('broadcast_recipients')
    op.drop_table('broadcasts')
