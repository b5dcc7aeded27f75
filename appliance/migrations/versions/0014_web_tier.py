"""web_tier: no schema change (reserved for a part of issue 14 that needed none; kept so the chain and the tests that name it stay)

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
