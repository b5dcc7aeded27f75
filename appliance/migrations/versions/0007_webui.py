"""web UI: admin second factor and login throttling state (issue 6)

One table: a user's optional TOTP secret (sealed with the appliance key), enabled once a code
confirmed it, with the last accepted time step so a code cannot be replayed. Web sign-ins reuse
user_sessions (kind "web"); login throttling reuses the rate-limit counters.

Revision ID: 0007_webui
Revises: 0006_approvals
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0007_webui'
down_revision = '0006_approvals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_totp',
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('enabled_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_totp_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_user_totp'))
    )


def downgrade() -> None:
    op.drop_table('user_totp')
