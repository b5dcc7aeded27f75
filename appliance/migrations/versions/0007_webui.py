"""web UI: admin second factor and login throttling state (issue 6)

Reserved in the chain so that work on several issues at once adds its tables without a fork in
the migration history; the issue that owns this revision fills in upgrade() and downgrade().

Revision ID: 0007_webui
Revises: 0006_approvals
Create Date: 2026-11-29
"""
from alembic import op  # noqa: F401


revision = '0007_webui'
down_revision = '0006_approvals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
