"""sign_in_hardening: refresh-token families, so a reused refresh token revokes its sign-in

Each refresh now writes a new user_sessions row (new access and refresh tokens) and marks the
old one rotated. `family_id` names the first row of the sign-in (existing rows: their own id), so
presenting a rotated refresh token again ends every row of its family at once. The growing
sign-in delay needs no schema: it lives in rate_counters (issue 14, point 7).

Revision ID: 0013_sign_in_hardening
Revises: 0012_inbound_limits
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0013_sign_in_hardening'
down_revision = '0012_inbound_limits'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('rotated_at', appliance.models.base.UTCDateTime(timezone=True),
                                      nullable=True))
    op.execute("UPDATE user_sessions SET family_id = id")
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.alter_column('family_id', existing_type=sa.String(length=40), nullable=False)
        batch_op.create_index(batch_op.f('ix_user_sessions_family_id'), ['family_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_family_id'))
        batch_op.drop_column('rotated_at')
        batch_op.drop_column('family_id')
