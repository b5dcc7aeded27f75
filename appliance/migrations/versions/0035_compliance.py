"""compliance: reserved for issue 23 points 4-7 (export, erasure, retention, audit bundle); no schema change yet

Revision ID: 0035_compliance
Revises: 0034_activity
Create Date: 2026-12-06
"""

revision = '0035_compliance'
down_revision = '0034_activity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
