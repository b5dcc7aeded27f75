"""settings: reserved for issue 27 (settings); no schema change yet

Revision ID: 0026_settings
Revises: 0025_calendar
Create Date: 2026-12-06
"""

revision = '0026_settings'
down_revision = '0025_calendar'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
