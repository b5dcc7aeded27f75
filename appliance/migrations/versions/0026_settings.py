"""settings: the per-sender window of automatic replies (out-of-office, RFC 3834)

Tenant and inbox settings live in the `settings` JSON columns of 0019; this adds
`auto_reply_windows`: when an inbox last answered a sender automatically, per purpose, unique
per (inbox, sender, purpose).

Revision ID: 0026_settings
Revises: 0025_calendar
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0026_settings'
down_revision = '0025_calendar'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('auto_reply_windows',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('last_sent_at', _dt(timezone=True), nullable=False),
    _fk('auto_reply_windows', 'tenant_id', 'tenants'),
    _fk('auto_reply_windows', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_reply_windows'))
    )
    with op.batch_alter_table('auto_reply_windows', schema=None) as batch_op:
        batch_op.create_index('uq_auto_reply_windows_key', ['inbox_id', 'sender', 'purpose'], unique=True)
        batch_op.create_index('ix_auto_reply_windows_tenant_id', ['tenant_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auto_reply_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_reply_windows_tenant_id')
        batch_op.drop_index('uq_auto_reply_windows_key')
    op.drop_table('auto_reply_windows')
