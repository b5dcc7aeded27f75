"""alerts: reserved for issue 15 (events to the outside); no schema change yet

Revision ID: 0017_alerts
Revises: 0016_tenancy_roles
Create Date: 2026-12-06
"""

revision = '0017_alerts'
down_revision = '0016_tenancy_roles'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
