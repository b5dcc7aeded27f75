"""imports: jobs copying an existing mailbox's history in over IMAP, and what each brought in

Revision ID: 0038_imports
Revises: 0037_app_passwords
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0038_imports'
down_revision = '0037_app_passwords'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str, ondelete: str = 'CASCADE'):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete=ondelete)


def upgrade() -> None:
    op.create_table('mail_imports',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('host', sa.String(length=253), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('security', sa.String(length=16), nullable=False),
    sa.Column('username', sa.String(length=320), nullable=False),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('folders', sa.JSON(), nullable=False),
    sa.Column('since', sa.String(length=10), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('lease_owner', sa.String(length=80), nullable=False),
    sa.Column('lease_until', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('finished_at', _dt(timezone=True), nullable=True),
    _fk('mail_imports', 'tenant_id', 'tenants'),
    _fk('mail_imports', 'inbox_id', 'inboxes'),
    _fk('mail_imports', 'created_by', 'users', 'SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_imports'))
    )
    with op.batch_alter_table('mail_imports', schema=None) as batch_op:
        batch_op.create_index('ix_mail_imports_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_mail_imports_status', ['status', 'lease_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_imports_inbox_id'), ['inbox_id'], unique=False)
    op.create_table('mail_import_items',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    _fk('mail_import_items', 'tenant_id', 'tenants'),
    _fk('mail_import_items', 'inbox_id', 'inboxes'),
    _fk('mail_import_items', 'message_id', 'messages'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_import_items'))
    )
    with op.batch_alter_table('mail_import_items', schema=None) as batch_op:
        batch_op.create_index('uq_mail_import_items_key', ['inbox_id', 'key'], unique=True)
        batch_op.create_index('ix_mail_import_items_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_import_items_message_id'), ['message_id'], unique=False)


def downgrade() -> None:
    op.drop_table('mail_import_items')
    op.drop_table('mail_imports')
