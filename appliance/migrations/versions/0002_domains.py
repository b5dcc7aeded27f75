"""domains: dkim keys, dns results, live inbox addresses

Revision ID: 0002_domains
Revises: 0001_foundation
Create Date: 2026-11-28 18:46:52.921877
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0002_domains'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dkim_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('selector', sa.String(length=63), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('private_key_enc', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('activated_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retire_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_dkim_keys_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dkim_keys'))
    )
    with op.batch_alter_table('dkim_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dkim_keys_domain_id'), ['domain_id'], unique=False)
        batch_op.create_index('uq_dkim_keys_domain_selector', ['domain_id', 'selector'], unique=True)

    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dns_results', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('dns_checked_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('inboxes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_inboxes_address'), type_='unique')
        batch_op.create_index(batch_op.f('ix_inboxes_address'), ['address'], unique=False)
        batch_op.create_index('uq_inboxes_live_address', ['address'], unique=True, sqlite_where=sa.text("status != 'deleted'"), postgresql_where=sa.text("status != 'deleted'"))



def downgrade() -> None:
    with op.batch_alter_table('inboxes', schema=None) as batch_op:
        batch_op.drop_index('uq_inboxes_live_address', sqlite_where=sa.text("status != 'deleted'"), postgresql_where=sa.text("status != 'deleted'"))
        batch_op.drop_index(batch_op.f('ix_inboxes_address'))
        batch_op.create_unique_constraint(batch_op.f('uq_inboxes_address'), ['address'])

    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.drop_column('dns_checked_at')
        batch_op.drop_column('dns_results')

    with op.batch_alter_table('dkim_keys', schema=None) as batch_op:
        batch_op.drop_index('uq_dkim_keys_domain_selector')
        batch_op.drop_index(batch_op.f('ix_dkim_keys_domain_id'))

    op.drop_table('dkim_keys')
