"""app passwords: the secrets people's mail clients sign in with (IMAP, SMTP submission)

Revision ID: 0037_app_passwords
Revises: 0036_imap
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0037_app_passwords'
down_revision = '0036_imap'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('app_passwords',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('last_used_at', _dt(timezone=True), nullable=True),
    sa.Column('revoked_at', _dt(timezone=True), nullable=True),
    _fk('app_passwords', 'tenant_id', 'tenants'),
    _fk('app_passwords', 'user_id', 'users'),
    _fk('app_passwords', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_passwords')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_app_passwords_secret_hash'))
    )
    with op.batch_alter_table('app_passwords', schema=None) as batch_op:
        batch_op.create_index('ix_app_passwords_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_app_passwords_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_app_passwords_inbox_id'), ['inbox_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('app_passwords', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_app_passwords_inbox_id'))
        batch_op.drop_index(batch_op.f('ix_app_passwords_user_id'))
        batch_op.drop_index('ix_app_passwords_tenant_id')
    op.drop_table('app_passwords')
