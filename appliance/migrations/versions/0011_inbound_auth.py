"""inbound_auth: no schema change (reserved for a part of issue 14 that needed none; kept so the chain and the tests that name it stay)

Revision ID: 0011_inbound_auth
Revises: 0010_outbound_tls
Create Date: 2026-12-06
"""

revision = '0011_inbound_auth'
down_revision = '0010_outbound_tls'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
