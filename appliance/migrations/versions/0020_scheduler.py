"""scheduler: reserved for issue 15 (alert offsets and the scheduler); no schema change yet

Revision ID: 0020_scheduler
Revises: 0019_workspace_foundation
Create Date: 2026-12-06
"""

revision = '0020_scheduler'
down_revision = '0019_workspace_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
