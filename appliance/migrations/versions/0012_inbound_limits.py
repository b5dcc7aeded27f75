"""inbound_limits: no schema change (reserved for a part of issue 14 that needed none; kept so the chain and the tests that name it stay)

Revision ID: 0012_inbound_limits
Revises: 0011_inbound_auth
Create Date: 2026-12-06
"""

revision = '0012_inbound_limits'
down_revision = '0011_inbound_auth'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
