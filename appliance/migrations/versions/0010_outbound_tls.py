"""outbound_tls: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0010_outbound_tls
Revises: 0009_domain_claims
Create Date: 2026-12-06
"""

revision = '0010_outbound_tls'
down_revision = '0009_domain_claims'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
