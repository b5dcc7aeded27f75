"""sender_rules: sender rules and forwarding per inbox, follow-up sequences and their enrollments

Issue 20 points 3-5: `sender_rules` and `inbox_forwarding` (one row per inbox), `sequences` and
`sequence_enrollments` (appliance/models/senders.py).

Revision ID: 0032_sender_rules
Revises: 0031_workflows
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0032_sender_rules'
down_revision = '0031_workflows'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('sender_rules',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbound_mode', sa.String(length=16), nullable=False),
    sa.Column('outbound_mode', sa.String(length=16), nullable=False),
    sa.Column('inbound_patterns', sa.JSON(), nullable=False),
    sa.Column('outbound_patterns', sa.JSON(), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('sender_rules', 'inbox_id', 'inboxes'),
    _fk('sender_rules', 'tenant_id', 'tenants'),
    sa.PrimaryKeyConstraint('inbox_id', name=op.f('pk_sender_rules'))
    )
    with op.batch_alter_table('sender_rules', schema=None) as batch_op:
        batch_op.create_index('ix_sender_rules_tenant_id', ['tenant_id', 'inbox_id'], unique=False)

    op.create_table('inbox_forwarding',
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('default_address', sa.String(length=320), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('keep_copy', sa.Boolean(), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('inbox_forwarding', 'inbox_id', 'inboxes'),
    _fk('inbox_forwarding', 'tenant_id', 'tenants'),
    sa.PrimaryKeyConstraint('inbox_id', name=op.f('pk_inbox_forwarding'))
    )
    with op.batch_alter_table('inbox_forwarding', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_forwarding_tenant_id', ['tenant_id', 'inbox_id'], unique=False)

    op.create_table('sequences',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('exit_on_reply', sa.Boolean(), nullable=False),
    sa.Column('emails', sa.JSON(), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('sequences', 'tenant_id', 'tenants'),
    _fk('sequences', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sequences'))
    )
    with op.batch_alter_table('sequences', schema=None) as batch_op:
        batch_op.create_index('ix_sequences_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_sequences_inbox_id', ['inbox_id', 'id'], unique=False)

    op.create_table('sequence_enrollments',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('sequence_id', sa.String(length=40), nullable=False),
    sa.Column('contact_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('exit_reason', sa.String(length=16), nullable=True),
    sa.Column('next_step', sa.Integer(), nullable=False),
    sa.Column('thread_id', sa.String(length=40), nullable=True),
    sa.Column('last_message_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.Column('ended_at', _dt(timezone=True), nullable=True),
    _fk('sequence_enrollments', 'tenant_id', 'tenants'),
    _fk('sequence_enrollments', 'inbox_id', 'inboxes'),
    _fk('sequence_enrollments', 'sequence_id', 'sequences'),
    _fk('sequence_enrollments', 'contact_id', 'contacts'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sequence_enrollments'))
    )
    with op.batch_alter_table('sequence_enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_sequence_enrollments_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_sequence_enrollments_sequence', ['sequence_id', 'id'], unique=False)
        batch_op.create_index('ix_sequence_enrollments_contact', ['contact_id', 'status'], unique=False)
        batch_op.create_index('ix_sequence_enrollments_inbox_status', ['inbox_id', 'status'], unique=False)


def downgrade() -> None:
    for table in ('sequence_enrollments', 'sequences', 'inbox_forwarding', 'sender_rules'):
        op.drop_table(table)
