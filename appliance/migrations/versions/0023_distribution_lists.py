"""distribution_lists: distribution lists and their member inboxes

Issue 16.5: `distribution_lists` (a shared address on a verified domain of a tenant, unique) and
`distribution_list_members` (the tenant's inboxes that receive its mail, one copy each).

Revision ID: 0023_distribution_lists
Revises: 0022_labels_team
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0023_distribution_lists'
down_revision = '0022_labels_team'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('distribution_lists',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    _fk('distribution_lists', 'tenant_id', 'tenants'),
    _fk('distribution_lists', 'domain_id', 'domains'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distribution_lists'))
    )
    with op.batch_alter_table('distribution_lists', schema=None) as batch_op:
        batch_op.create_index('uq_distribution_lists_address', ['address'], unique=True)
        batch_op.create_index('ix_distribution_lists_tenant_id', ['tenant_id', 'id'], unique=False)

    op.create_table('distribution_list_members',
    sa.Column('list_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('added_at', _dt(timezone=True), nullable=False),
    _fk('distribution_list_members', 'list_id', 'distribution_lists'),
    _fk('distribution_list_members', 'inbox_id', 'inboxes'),
    _fk('distribution_list_members', 'tenant_id', 'tenants'),
    sa.PrimaryKeyConstraint('list_id', 'inbox_id', name=op.f('pk_distribution_list_members'))
    )
    with op.batch_alter_table('distribution_list_members', schema=None) as batch_op:
        batch_op.create_index('ix_distribution_list_members_inbox_id', ['inbox_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('distribution_list_members', schema=None) as batch_op:
        batch_op.drop_index('ix_distribution_list_members_inbox_id')
    op.drop_table('distribution_list_members')
    with op.batch_alter_table('distribution_lists', schema=None) as batch_op:
        batch_op.drop_index('ix_distribution_lists_tenant_id')
        batch_op.drop_index('uq_distribution_lists_address')
    op.drop_table('distribution_lists')
