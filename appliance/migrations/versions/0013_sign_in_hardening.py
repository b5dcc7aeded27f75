"""sign_in_hardening: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0013_sign_in_hardening
Revises: 0012_inbound_limits
Create Date: 2026-12-06
"""

revision = '0013_sign_in_hardening'
down_revision = '0012_inbound_limits'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
