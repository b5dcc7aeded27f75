"""operations: process heartbeats and metrics (issue 7)

Reserved in the chain so that work on several issues at once adds its tables without a fork in
the migration history; the issue that owns this revision fills in upgrade() and downgrade().

Revision ID: 0005_operations
Revises: 0004_message_read_indexes
Create Date: 2026-11-29
"""
from alembic import op  # noqa: F401


revision = '0005_operations'
down_revision = '0004_message_read_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
