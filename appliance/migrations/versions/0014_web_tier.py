"""web_tier: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0014_web_tier
Revises: 0013_sign_in_hardening
Create Date: 2026-12-06
"""

revision = '0014_web_tier'
down_revision = '0013_sign_in_hardening'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
