"""attachment_blobs: reserved for issue 19 (attachments in the blob store); no schema change yet

Revision ID: 0039_attachment_blobs
Revises: 0038_imports
Create Date: 2026-12-06
"""

revision = '0039_attachment_blobs'
down_revision = '0038_imports'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
