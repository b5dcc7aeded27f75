"""token_cache: reserved for issue 26 (token cache invalidation); no schema change yet

Revision ID: 0042_token_cache
Revises: 0041_dkim_ed25519
Create Date: 2026-12-06
"""

revision = '0042_token_cache'
down_revision = '0041_dkim_ed25519'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
