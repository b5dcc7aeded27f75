"""usage_caps: reserved for issue 22 (usage and caps); no schema change yet

Revision ID: 0027_usage_caps
Revises: 0026_settings
Create Date: 2026-12-06
"""

revision = '0027_usage_caps'
down_revision = '0026_settings'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
