"""audit_owner: on PostgreSQL, retention prunes the audit log through `audit_prune()` (issue 23)

A SECURITY DEFINER function that writes the prune mark, deletes the chain's entries at or below
it and removes the mark, and only when the chain's newest entry is the `audit.pruned` entry that
names exactly this range (`<chain>:<through_seq>`, which retention signs). Once `gentbox db
harden` has given the audit tables and this function to a separate NOLOGIN owner role, it is the
application role's only way to delete audit entries: it may no longer write `audit_prunes`, drop
or disable the triggers, or change the tables' owner (services/governance/audit_owner.py).
SQLite has no roles: nothing changes there (retention writes the mark itself, as before).

Revision ID: 0040_audit_owner
Revises: 0039_attachment_blobs
Create Date: 2026-12-06
"""
from alembic import op

revision = '0040_audit_owner'
down_revision = '0039_attachment_blobs'
branch_labels = None
depends_on = None

# search_path pinned: a SECURITY DEFINER function must not resolve names in a schema the caller controls.
_PG_PRUNE = """
CREATE OR REPLACE FUNCTION audit_prune(p_chain text, p_through bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  newest audit_entries%ROWTYPE;
  removed bigint;
BEGIN
  SELECT * INTO newest FROM audit_entries WHERE chain = p_chain ORDER BY seq DESC LIMIT 1;
  IF newest.action IS DISTINCT FROM 'audit.pruned' OR newest.resource_id IS DISTINCT FROM p_chain || ':' || p_through
     OR p_through >= newest.seq THEN
    RAISE EXCEPTION 'audit pruning needs the audit.pruned entry naming %:% at the head of the chain', p_chain, p_through
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  INSERT INTO audit_prunes (chain, through_seq, at) VALUES (p_chain, p_through, now());
  DELETE FROM audit_entries WHERE chain = p_chain AND seq <= p_through;
  GET DIAGNOSTICS removed = ROW_COUNT;
  DELETE FROM audit_prunes WHERE chain = p_chain;
  RETURN removed;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_PRUNE)
        op.execute("REVOKE ALL ON FUNCTION audit_prune(text, bigint) FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP FUNCTION audit_prune(text, bigint)")
