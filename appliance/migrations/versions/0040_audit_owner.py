"""audit_owner: reserved for issue 23 (audit triggers owned by a separate role); no schema change yet

Revision ID: 0040_audit_owner
Revises: 0039_attachment_blobs
Create Date: 2026-12-06
"""

revision = '0040_audit_owner'
down_revision = '0039_attachment_blobs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
