"""imap: reserved for issue 25 (IMAP UIDs, app passwords, import jobs); no schema change yet

Revision ID: 0036_imap
Revises: 0035_compliance
Create Date: 2026-12-06
"""

revision = '0036_imap'
down_revision = '0035_compliance'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
