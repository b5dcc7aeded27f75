"""outbound_tls: the MTA-STS policy cache of recipient domains (issue 14)

One row per recipient domain that published an MTA-STS policy (RFC 8461): its TXT id, mode, MX
patterns and max_age as last fetched over HTTPS, so every worker applies the same policy and
refetches only when the id changes or max_age passes.

Revision ID: 0010_outbound_tls
Revises: 0009_domain_claims
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0010_outbound_tls'
down_revision = '0009_domain_claims'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mta_sts_policies',
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('policy_id', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('mx', sa.JSON(), nullable=False),
    sa.Column('max_age', sa.Integer(), nullable=False),
    sa.Column('fetched_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('domain', name=op.f('pk_mta_sts_policies'))
    )


def downgrade() -> None:
    op.drop_table('mta_sts_policies')
