"""tasks_agenda: reserved for issue 18 (tasks and the agenda); no schema change yet

Revision ID: 0024_tasks_agenda
Revises: 0023_distribution_lists
Create Date: 2026-12-06
"""

revision = '0024_tasks_agenda'
down_revision = '0023_distribution_lists'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
