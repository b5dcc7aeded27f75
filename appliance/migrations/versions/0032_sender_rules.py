"""sender_rules: reserved for issue 20 points 3-5 (sender rules, forwarding, sequences); no schema change yet

Revision ID: 0032_sender_rules
Revises: 0031_workflows
Create Date: 2026-12-06
"""

revision = '0032_sender_rules'
down_revision = '0031_workflows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
