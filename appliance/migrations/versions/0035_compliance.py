"""compliance: export jobs, erasure requests, and the audit prune mark retention deletes under (issue 23)

`compliance_exports` (zip jobs the worker builds, sealed at rest), `compliance_deletions`
(right-to-erasure requests with their grace period; the subject sealed until carried out),
`audit_prunes` (a chain's prune mark), `retention_policies` (days kept per tenant). The audit append-only triggers now allow exactly one kind
of DELETE: entries of a chain at or below the mark in `audit_prunes`, which retention writes,
uses and removes in one transaction (services/governance/retention.py). Every other DELETE and
UPDATE is refused as before.

Revision ID: 0035_compliance
Revises: 0034_activity
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0035_compliance'
down_revision = '0034_activity'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.pii IS NULL AND (to_jsonb(NEW) - 'pii') = (to_jsonb(OLD) - 'pii') THEN
    RETURN NEW;  -- erasure clears the personal data, nothing else
  END IF;
  IF TG_OP = 'DELETE'{prune} THEN
    RETURN OLD;  -- retention pruning under a mark written in the same transaction
  END IF;
  RAISE EXCEPTION 'audit entries are append-only' USING ERRCODE = 'insufficient_privilege';
END $$
"""
_PG_PRUNE = (" AND EXISTS (SELECT 1 FROM audit_prunes p WHERE p.chain = OLD.chain "
             "AND OLD.seq <= p.through_seq)")
_SQLITE_NO_DELETE = ("CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries {when}"
                     "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END")
_SQLITE_PRUNE = ("WHEN NOT EXISTS (SELECT 1 FROM audit_prunes p WHERE p.chain = OLD.chain "
                 "AND OLD.seq <= p.through_seq) ")


def upgrade() -> None:
    op.create_table('compliance_exports',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=True),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('sealed', sa.LargeBinary(), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('started_at', _dt(timezone=True), nullable=True),
    sa.Column('ready_at', _dt(timezone=True), nullable=True),
    sa.Column('expires_at', _dt(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_compliance_exports_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_compliance_exports_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_exports'))
    )
    with op.batch_alter_table('compliance_exports', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_exports_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_compliance_exports_status', ['status'], unique=False)
    op.create_table('compliance_deletions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('requested_by', sa.String(length=40), nullable=True),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=True),
    sa.Column('subject_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('subject_digest', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('effective_at', _dt(timezone=True), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('cancelled_at', _dt(timezone=True), nullable=True),
    sa.Column('completed_at', _dt(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_deletions'))
    )
    with op.batch_alter_table('compliance_deletions', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_deletions_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_compliance_deletions_status', ['status', 'effective_at'], unique=False)
    op.create_table('audit_prunes',
    sa.Column('chain', sa.String(length=40), nullable=False),
    sa.Column('through_seq', sa.BigInteger(), nullable=False),
    sa.Column('at', _dt(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_prunes'))
    )
    op.create_table('retention_policies',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('messages_days', sa.Integer(), nullable=True),
    sa.Column('events_days', sa.Integer(), nullable=True),
    sa.Column('audit_days', sa.Integer(), nullable=True),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.Column('applied_at', _dt(timezone=True), nullable=True),
    sa.Column('last_result', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_retention_policies_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_retention_policies'))
    )
    _delete_rule(prune=True)


def _delete_rule(prune: bool) -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_FUNCTION.format(prune=_PG_PRUNE if prune else " AND FALSE"))
    else:
        op.execute("DROP TRIGGER audit_entries_no_delete")
        op.execute(_SQLITE_NO_DELETE.format(when=_SQLITE_PRUNE if prune else ""))


def downgrade() -> None:
    _delete_rule(prune=False)
    op.drop_table('retention_policies')
    op.drop_table('audit_prunes')
    with op.batch_alter_table('compliance_deletions', schema=None) as batch_op:
        batch_op.drop_index('ix_compliance_deletions_status')
        batch_op.drop_index('ix_compliance_deletions_tenant_id')
    op.drop_table('compliance_deletions')
    with op.batch_alter_table('compliance_exports', schema=None) as batch_op:
        batch_op.drop_index('ix_compliance_exports_status')
        batch_op.drop_index('ix_compliance_exports_tenant_id')
    op.drop_table('compliance_exports')
