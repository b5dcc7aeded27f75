"""broadcast: reserved for issue 16 point 2 (broadcast and one-click unsubscribe); no schema change yet

Revision ID: 0029_broadcast
Revises: 0028_audit
Create Date: 2026-12-06
"""

revision = '0029_broadcast'
down_revision = '0028_audit'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
