"""imap: imap_mailboxes (UIDVALIDITY, next UID per folder) and imap_uids (a message's UID per folder)

Issue 25 point 1: UIDs persist in a table, never derived from ids, never reused.

Revision ID: 0036_imap
Revises: 0035_compliance
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0036_imap'
down_revision = '0035_compliance'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def upgrade() -> None:
    op.create_table('imap_mailboxes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('uid_validity', sa.BigInteger(), nullable=False),
    sa.Column('uid_next', sa.BigInteger(), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_imap_mailboxes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_imap_mailboxes_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imap_mailboxes'))
    )
    with op.batch_alter_table('imap_mailboxes', schema=None) as batch_op:
        batch_op.create_index('ix_imap_mailboxes_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('uq_imap_mailboxes_inbox_name', ['inbox_id', 'name'], unique=True)
    op.create_table('imap_uids',
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], ['imap_mailboxes.id'], name=op.f('fk_imap_uids_mailbox_id_imap_mailboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_imap_uids_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('mailbox_id', 'uid', name=op.f('pk_imap_uids'))
    )
    with op.batch_alter_table('imap_uids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imap_uids_message_id'), ['message_id'], unique=False)
        batch_op.create_index('uq_imap_uids_mailbox_message', ['mailbox_id', 'message_id'], unique=True)


def downgrade() -> None:
    op.drop_table('imap_uids')
    op.drop_table('imap_mailboxes')
