"""distribution_lists: reserved for issue 16 (distribution lists); no schema change yet

Revision ID: 0023_distribution_lists
Revises: 0022_labels_team
Create Date: 2026-12-06
"""

revision = '0023_distribution_lists'
down_revision = '0022_labels_team'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
