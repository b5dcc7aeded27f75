"""approvals: held agent actions (issue 8)

Reserved in the chain so that work on several issues at once adds its tables without a fork in
the migration history; the issue that owns this revision fills in upgrade() and downgrade().

Revision ID: 0006_approvals
Revises: 0005_operations
Create Date: 2026-11-29
"""
from alembic import op  # noqa: F401


revision = '0006_approvals'
down_revision = '0005_operations'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
