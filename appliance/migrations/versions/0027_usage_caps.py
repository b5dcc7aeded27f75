"""usage_caps: metered usage counters in hour buckets, and send, mailbox, files and spend caps

Issue 22: `usage_counters` (one row per tenant, inbox, metric and hour; one upsert per metered
action) and `usage_caps` (a cap per tenant, inbox or token). Send-cap windows count in the
existing `rate_counters` table (keys `cap:...`), so no table is added for them.

Revision ID: 0027_usage_caps
Revises: 0026_settings
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0027_usage_caps'
down_revision = '0026_settings'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def upgrade() -> None:
    op.create_table('usage_counters',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('metric', sa.String(length=40), nullable=False),
    sa.Column('hour', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_usage_counters_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'inbox_id', 'metric', 'hour', name=op.f('pk_usage_counters'))
    )
    with op.batch_alter_table('usage_counters', schema=None) as batch_op:
        batch_op.create_index('ix_usage_counters_hour', ['hour', 'metric'], unique=False)
    # The mailbox storage gauge starts from the mail already stored (once; from here on it is
    # kept by every store and delete).
    op.execute("INSERT INTO usage_counters (tenant_id, inbox_id, metric, hour, value) "
               "SELECT tenant_id, inbox_id, 'mailbox_bytes', 0, SUM(size) FROM messages "
               "GROUP BY tenant_id, inbox_id")

    op.create_table('usage_caps',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=40), nullable=False),
    sa.Column('per_hour', sa.Integer(), nullable=True),
    sa.Column('per_day', sa.Integer(), nullable=True),
    sa.Column('per_month', sa.Integer(), nullable=True),
    sa.Column('limit_bytes', sa.BigInteger(), nullable=True),
    sa.Column('monthly_limit', sa.Float(), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('alert_thresholds', sa.JSON(), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_usage_caps_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_caps'))
    )
    with op.batch_alter_table('usage_caps', schema=None) as batch_op:
        batch_op.create_index('uq_usage_caps_subject', ['tenant_id', 'kind', 'subject_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('usage_caps', schema=None) as batch_op:
        batch_op.drop_index('uq_usage_caps_subject')
    op.drop_table('usage_caps')
    with op.batch_alter_table('usage_counters', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_counters_hour')
    op.drop_table('usage_counters')
