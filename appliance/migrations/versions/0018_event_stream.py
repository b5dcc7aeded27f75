"""event_stream: reserved for issue 15 (events to the outside); no schema change yet

Revision ID: 0018_event_stream
Revises: 0017_alerts
Create Date: 2026-12-06
"""

revision = '0018_event_stream'
down_revision = '0017_alerts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
