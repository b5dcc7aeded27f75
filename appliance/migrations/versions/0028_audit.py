"""audit: the append-only, hash-chained audit log and its chain heads (issue 23)

`audit_entries` (one chain per tenant and one for the box; personal data in `pii`, outside the
hash) and `audit_heads` (each chain's last seq and hash). Triggers on both backends refuse every
DELETE and every UPDATE other than clearing `pii` (what erasure does). `agent_tokens.seen_ips`: the addresses a token was used from, so the log
notes each token's first use from a new one.

Revision ID: 0028_audit
Revises: 0027_usage_caps
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0028_audit'
down_revision = '0027_usage_caps'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime
_COLUMNS = ('id', 'chain', 'seq', 'tenant_id', 'at', 'actor_kind', 'actor_id', 'action', 'resource_type',
            'resource_id', 'request_id', 'edge', 'pii_digest', 'prev_hash', 'hash')

_PG_FUNCTION = """
CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.pii IS NULL AND (to_jsonb(NEW) - 'pii') = (to_jsonb(OLD) - 'pii') THEN
    RETURN NEW;  -- erasure clears the personal data, nothing else
  END IF;
  RAISE EXCEPTION 'audit entries are append-only' USING ERRCODE = 'insufficient_privilege';
END $$
"""


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('chain', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=True),
    sa.Column('at', _dt(timezone=True), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=40), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('resource_type', sa.String(length=40), nullable=True),
    sa.Column('resource_id', sa.String(length=100), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('edge', sa.String(length=16), nullable=False),
    sa.Column('pii', sa.JSON(), nullable=True),
    sa.Column('pii_digest', sa.String(length=64), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('uq_audit_entries_chain_seq', ['chain', 'seq'], unique=True)
        batch_op.create_index('ix_audit_entries_tenant_at', ['tenant_id', 'at'], unique=False)
    op.create_table('audit_heads',
    sa.Column('chain', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_heads'))
    )
    op.add_column('agent_tokens', sa.Column('seen_ips', sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
                   "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()")
    else:
        same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _COLUMNS)
        op.execute("CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
                   f"WHEN NOT (NEW.pii IS NULL AND {same}) "
                   "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END")
        op.execute("CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
                   "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION audit_entries_append_only()")
    else:
        op.execute("DROP TRIGGER audit_entries_no_delete")
        op.execute("DROP TRIGGER audit_entries_no_update")
    op.drop_column('agent_tokens', 'seen_ips')
    op.drop_table('audit_heads')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_tenant_at')
        batch_op.drop_index('uq_audit_entries_chain_seq')
    op.drop_table('audit_entries')
