"""contacts: reserved for issue 17 (contacts and sharing); no schema change yet

Revision ID: 0021_contacts
Revises: 0020_scheduler
Create Date: 2026-12-06
"""

revision = '0021_contacts'
down_revision = '0020_scheduler'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
