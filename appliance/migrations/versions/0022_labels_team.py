"""labels_team: reserved for issue 16 (labels, templates, notes, assignment); no schema change yet

Revision ID: 0022_labels_team
Revises: 0021_contacts
Create Date: 2026-12-06
"""

revision = '0022_labels_team'
down_revision = '0021_contacts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
