"""outbound queue

Revision ID: 0004_outbound
Revises: 0003_messages
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0004_outbound'
down_revision = '0003_messages'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_queue',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('system_mail_id', sa.String(length=40), nullable=True),
    sa.Column('tenant_id', sa.String(length=40), nullable=True),
    sa.Column('inbox_id', sa.String(length=40), nullable=True),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=False),
    sa.Column('last_reply', sa.Text(), nullable=False),
    sa.Column('delay_notified', sa.Boolean(), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_outbound_queue_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['system_mail_id'], ['system_mail.id'], name=op.f('fk_outbound_queue_system_mail_id_system_mail'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_queue'))
    )
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_queue_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_queue_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_queue_system_mail_id'), ['system_mail_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_queue_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('outbound_recipients',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('queue_id', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_attempt_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('smtp_reply', sa.Text(), nullable=False),
    sa.Column('remote_host', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['outbound_queue.id'], name=op.f('fk_outbound_recipients_queue_id_outbound_queue'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_recipients'))
    )
    with op.batch_alter_table('outbound_recipients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_recipients_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_recipients_queue_id'), ['queue_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbound_recipients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_recipients_queue_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_recipients_message_id'))

    op.drop_table('outbound_recipients')
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_queue_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_queue_system_mail_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_queue_message_id'))
        batch_op.drop_index('ix_outbound_queue_due')

    op.drop_table('outbound_queue')
