"""files: reserved for issue 19 (files, blob store, signed links, spreadsheets); no schema change yet

Revision ID: 0030_files
Revises: 0029_broadcast
Create Date: 2026-12-06
"""

revision = '0030_files'
down_revision = '0029_broadcast'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
