"""dkim_ed25519: an algorithm column on dkim_keys (rsa or ed25519, RFC 8463)

Every existing key is RSA (server default 'rsa'). No Ed25519 key is made here: a migration has no
access to the appliance's secret key, which seals private keys. Domains created before this
revision get their Ed25519 key (pending until its record is seen in DNS) the next time they are
verified or their DKIM key is rotated (appliance/services/domains/dkim.py ensure_ed25519_key);
`gentbox doctor` warns about each domain still without one.

Revision ID: 0041_dkim_ed25519
Revises: 0040_audit_owner
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0041_dkim_ed25519'
down_revision = '0040_audit_owner'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dkim_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('algorithm', sa.String(length=16), nullable=False, server_default='rsa'))


def downgrade() -> None:
    # An Ed25519 key means nothing to the older schema: its rows go, RSA keys stay as they were.
    op.execute("DELETE FROM dkim_keys WHERE algorithm = 'ed25519'")
    with op.batch_alter_table('dkim_keys', schema=None) as batch_op:
        batch_op.drop_column('algorithm')
