"""tenancy_roles: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0016_tenancy_roles
Revises: 0015_event_seq
Create Date: 2026-12-06
"""

revision = '0016_tenancy_roles'
down_revision = '0015_event_seq'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
