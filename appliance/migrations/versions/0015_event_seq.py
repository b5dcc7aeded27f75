"""event seq: events get a commit-ordered seq, a category and an actor {kind, id}

- `events.seq` (BIGINT, unique, not null): numbered in commit order by services/events.py from
  the one-row `event_counter` table; readers page by it. Existing events are numbered in id order.
- `events.category` (from the event type registry; existing rows by the type's first word),
  `events.actor_kind` (user, agent, system, smtp, worker, workflow) and `events.actor_id` (the
  old `actor` column, renamed). Existing rows: `usr_` ids are users, `tok_` ids agents,
  `message.received` without an actor came over SMTP, the rest is `system`.
- The inbox and tenant indexes lead to seq instead of id (the lists are ordered by seq).

Revision ID: 0015_event_seq
Revises: 0014_web_tier
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_event_seq'
down_revision = '0014_web_tier'
branch_labels = None
depends_on = None

CATEGORIES = {"message": "messages", "domain": "domains", "inbox": "inboxes", "token": "tokens",
              "approval": "approvals", "user": "users", "waitlist": "access"}


def _category_case() -> str:
    whens = " ".join(f"WHEN type LIKE '{word}.%' THEN '{category}'" for word, category in CATEGORIES.items())
    return f"CASE {whens} ELSE 'other' END"


ACTOR_KIND = ("CASE WHEN substr(actor_id, 1, 4) = 'usr_' THEN 'user' "
              "WHEN substr(actor_id, 1, 4) = 'tok_' THEN 'agent' "
              "WHEN actor_id IS NULL AND type = 'message.received' THEN 'smtp' ELSE 'system' END")


def upgrade() -> None:
    op.create_table('event_counter',
                    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('last_seq', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_counter')))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('category', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('actor_kind', sa.String(length=16), nullable=True))
        batch_op.alter_column('actor', new_column_name='actor_id', existing_type=sa.String(length=40),
                              existing_nullable=True)
    op.execute("UPDATE events SET seq = numbered.n FROM "
               "(SELECT id, row_number() OVER (ORDER BY id) AS n FROM events) AS numbered "
               "WHERE events.id = numbered.id")
    op.execute(f"UPDATE events SET category = {_category_case()}, actor_kind = {ACTOR_KIND}")
    op.execute("INSERT INTO event_counter (id, last_seq) SELECT 1, coalesce(max(seq), 0) FROM events")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('category', existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column('actor_kind', existing_type=sa.String(length=16), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_events_seq'), ['seq'])
        batch_op.drop_index('ix_events_inbox_id')
        batch_op.drop_index('ix_events_tenant_id')
        batch_op.create_index('ix_events_inbox_id', ['inbox_id', 'seq'], unique=False)
        batch_op.create_index('ix_events_tenant_id', ['tenant_id', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_tenant_id')
        batch_op.drop_index('ix_events_inbox_id')
        batch_op.drop_constraint(batch_op.f('uq_events_seq'), type_='unique')
        batch_op.drop_column('actor_kind')
        batch_op.drop_column('category')
        batch_op.drop_column('seq')
        batch_op.alter_column('actor_id', new_column_name='actor', existing_type=sa.String(length=40),
                              existing_nullable=True)
        batch_op.create_index('ix_events_inbox_id', ['inbox_id', 'id'], unique=False)
        batch_op.create_index('ix_events_tenant_id', ['tenant_id', 'id'], unique=False)
    op.drop_table('event_counter')
