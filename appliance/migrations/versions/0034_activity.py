"""activity: reserved for issue 21 points 1, 2, 5 (activity, relationships, external models); no schema change yet

Revision ID: 0034_activity
Revises: 0033_phishing
Create Date: 2026-12-06
"""

revision = '0034_activity'
down_revision = '0033_phishing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
