"""domain_claims: reserved for issue 14 (groundwork); no schema change yet

Revision ID: 0009_domain_claims
Revises: 0008_search_content
Create Date: 2026-12-06
"""

revision = '0009_domain_claims'
down_revision = '0008_search_content'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
