"""event_seq: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0015_event_seq
Revises: 0014_web_tier
Create Date: 2026-12-06
"""

revision = '0015_event_seq'
down_revision = '0014_web_tier'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
