"""workspace_foundation: labels, schedules, and settings on tenants and inboxes

Shared by the workspace areas built in parallel (issues 15-18, 27): `labels` (an inbox's label
registry: name, colour, type), `schedules` (events due at a time, emitted by the worker's
scheduler) and a `settings` JSON column on tenants and inboxes (only the keys set; defaults live
in appliance/services/identity/settings.py).

Revision ID: 0019_workspace_foundation
Revises: 0018_event_stream
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0019_workspace_foundation'
down_revision = '0018_event_stream'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('labels',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('color', sa.String(length=7), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    _fk('labels', 'tenant_id', 'tenants'),
    _fk('labels', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels'))
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index('ix_labels_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('uq_labels_inbox_name', ['inbox_id', 'name'], unique=True)

    op.create_table('schedules',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=True),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=40), nullable=True),
    sa.Column('due_at', _dt(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('fired_at', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('schedules', 'tenant_id', 'tenants'),
    _fk('schedules', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules'))
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index('uq_schedules_key', ['key'], unique=True)
        batch_op.create_index('ix_schedules_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_schedules_due', ['fired_at', 'due_at'], unique=False)

    # Plain ALTER TABLE on both backends (SQLite adds and drops a column in place since 3.35): a
    # batch copy of `inboxes` would drop a table that other tables' foreign keys reference.
    for table in ('tenants', 'inboxes'):
        op.add_column(table, sa.Column('settings', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    for table in ('inboxes', 'tenants'):
        op.drop_column(table, 'settings')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index('ix_schedules_due')
        batch_op.drop_index('ix_schedules_tenant_id')
        batch_op.drop_index('uq_schedules_key')
    op.drop_table('schedules')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index('uq_labels_inbox_name')
        batch_op.drop_index('ix_labels_tenant_id')
    op.drop_table('labels')
