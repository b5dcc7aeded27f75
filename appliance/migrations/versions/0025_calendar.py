"""calendar: reserved for issue 18 (calendars and events); no schema change yet

Revision ID: 0025_calendar
Revises: 0024_tasks_agenda
Create Date: 2026-12-06
"""

revision = '0025_calendar'
down_revision = '0024_tasks_agenda'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
