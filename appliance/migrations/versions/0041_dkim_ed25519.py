"""dkim_ed25519: reserved for issue 26 (Ed25519 DKIM keys); no schema change yet

Revision ID: 0041_dkim_ed25519
Revises: 0040_audit_owner
Create Date: 2026-12-06
"""

revision = '0041_dkim_ed25519'
down_revision = '0040_audit_owner'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
