"""phishing: reserved for issue 21 points 3, 4, 6 (phishing verdicts, naive Bayes, next step); no schema change yet

Revision ID: 0033_phishing
Revises: 0032_sender_rules
Create Date: 2026-12-06
"""

revision = '0033_phishing'
down_revision = '0032_sender_rules'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
