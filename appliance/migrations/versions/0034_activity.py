"""activity: the activity timeline and the relationship graph, projected from events (issue 21 points 1, 2)

`activity_items` (one line of a correspondent's history, unique on inbox + address + type +
resource), `relationship_nodes` (counts, last times and the decayed weight per correspondent),
`relationship_edges` (threads two correspondents share) and `relationship_threads` (who was seen
in which thread). External models (point 5) need no table: their settings live in
`inboxes.settings` and their spend in `usage_counters`.

Revision ID: 0034_activity
Revises: 0033_phishing
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0034_activity'
down_revision = '0033_phishing'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _owners(table: str) -> list:
    return [sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f(f'fk_{table}_inbox_id_inboxes'),
                                    ondelete='CASCADE'),
            sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_{table}_tenant_id_tenants'),
                                    ondelete='CASCADE')]


def upgrade() -> None:
    op.create_table('activity_items',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('participants', sa.JSON(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('occurred_at', _dt(timezone=True), nullable=False),
    *_owners('activity_items'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_items'))
    )
    with op.batch_alter_table('activity_items', schema=None) as batch_op:
        batch_op.create_index('ix_activity_items_occurred_at', ['occurred_at'], unique=False)
        batch_op.create_index('ix_activity_items_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_activity_items_timeline', ['inbox_id', 'address', 'seq'], unique=False)
        batch_op.create_index('uq_activity_items_key', ['inbox_id', 'address', 'type', 'resource_id'], unique=True)
    op.create_table('relationship_edges',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=320), nullable=False),
    sa.Column('target', sa.String(length=320), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    *_owners('relationship_edges'),
    sa.PrimaryKeyConstraint('inbox_id', 'source', 'target', name=op.f('pk_relationship_edges'))
    )
    with op.batch_alter_table('relationship_edges', schema=None) as batch_op:
        batch_op.create_index('ix_relationship_edges_target', ['inbox_id', 'target'], unique=False)
        batch_op.create_index('ix_relationship_edges_tenant_id', ['tenant_id', 'inbox_id'], unique=False)
    op.create_table('relationship_nodes',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('inbound_count', sa.Integer(), nullable=False),
    sa.Column('outbound_count', sa.Integer(), nullable=False),
    sa.Column('last_inbound_at', _dt(timezone=True), nullable=True),
    sa.Column('last_outbound_at', _dt(timezone=True), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('score_at', _dt(timezone=True), nullable=False),
    sa.Column('rank', sa.Float(), nullable=False),
    *_owners('relationship_nodes'),
    sa.PrimaryKeyConstraint('inbox_id', 'address', name=op.f('pk_relationship_nodes'))
    )
    with op.batch_alter_table('relationship_nodes', schema=None) as batch_op:
        batch_op.create_index('ix_relationship_nodes_rank', ['inbox_id', 'rank'], unique=False)
        batch_op.create_index('ix_relationship_nodes_tenant_id', ['tenant_id', 'inbox_id'], unique=False)
    op.create_table('relationship_threads',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('thread_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    *_owners('relationship_threads'),
    sa.PrimaryKeyConstraint('inbox_id', 'thread_id', 'address', name=op.f('pk_relationship_threads'))
    )
    with op.batch_alter_table('relationship_threads', schema=None) as batch_op:
        batch_op.create_index('ix_relationship_threads_tenant_id', ['tenant_id', 'inbox_id'], unique=False)


def downgrade() -> None:
    for table in ('relationship_threads', 'relationship_nodes', 'relationship_edges', 'activity_items'):
        op.drop_table(table)
