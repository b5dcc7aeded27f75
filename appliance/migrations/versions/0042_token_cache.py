"""token_cache: tenants.token_generation, bumped by triggers whenever an agent token changes (issue 26 point 3)

Each API process caches the agent tokens it has resolved; on every call it reads the tenant's
`token_generation` (one small row) and drops its cached copy when the number moved. The triggers
bump it in the same transaction as any change that matters to authentication (revoke, pause,
resume, rotate, narrowing, expiry, inbox move, deletion), whichever code path made it (ORM, a bulk
UPDATE such as an inbox's deletion, erasure), so no path can forget to invalidate. `last_used_at`
and `seen_ips` are left out: they change often and authenticate nothing.

Revision ID: 0042_token_cache
Revises: 0041_dkim_ed25519
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0042_token_cache'
down_revision = '0041_dkim_ed25519'
branch_labels = None
depends_on = None

_WATCHED = "status, token_hash, scopes, requires_approval, expires_at, revoked_at, inbox_id, tenant_id"
_BUMP = "UPDATE tenants SET token_generation = token_generation + 1 WHERE id = OLD.tenant_id"


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_generation', sa.Integer(), server_default='0', nullable=False))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"CREATE FUNCTION bump_token_generation() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   f"BEGIN {_BUMP}; RETURN NULL; END $$")
        op.execute(f"CREATE TRIGGER agent_tokens_changed AFTER UPDATE OF {_WATCHED} ON agent_tokens "
                   "FOR EACH ROW EXECUTE FUNCTION bump_token_generation()")
        op.execute("CREATE TRIGGER agent_tokens_deleted AFTER DELETE ON agent_tokens "
                   "FOR EACH ROW EXECUTE FUNCTION bump_token_generation()")
    else:
        op.execute(f"CREATE TRIGGER agent_tokens_changed AFTER UPDATE OF {_WATCHED} ON agent_tokens "
                   f"BEGIN {_BUMP}; END")
        op.execute(f"CREATE TRIGGER agent_tokens_deleted AFTER DELETE ON agent_tokens BEGIN {_BUMP}; END")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS agent_tokens_deleted" +
               (" ON agent_tokens" if op.get_bind().dialect.name == 'postgresql' else ""))
    op.execute("DROP TRIGGER IF EXISTS agent_tokens_changed" +
               (" ON agent_tokens" if op.get_bind().dialect.name == 'postgresql' else ""))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP FUNCTION IF EXISTS bump_token_generation()")
    # Not batch: on SQLite a batch drop recreates `tenants`, and dropping the old table would
    # cascade to every row that references it. SQLite 3.35+ drops a column in place.
    op.execute("ALTER TABLE tenants DROP COLUMN token_generation")
