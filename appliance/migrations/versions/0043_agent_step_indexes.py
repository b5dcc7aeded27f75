"""agent_step_indexes: partial indexes that answer GET /v1/users/me/'s two questions at once

An agent's `next_step` asks whether its inbox has sent anything and whether it has read anything.
Before, both EXISTS walked the inbox's (inbox, created_at, id) index until a row matched: an inbox
that never sent (a receive-only agent) or never read had every one of its messages visited on every
call, so the hot check-in grew with the inbox (0.4 ms at 1,000 messages, seconds at a million).
A partial index of only the rows that answer "yes" makes each question one index probe.

Revision ID: 0043_agent_step_indexes
Revises: 0042_token_cache
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0043_agent_step_indexes'
down_revision = '0042_token_cache'
branch_labels = None
depends_on = None

_SENT = sa.text("direction = 'outbound'")
_READ = sa.text("direction = 'inbound' AND is_read")


def upgrade() -> None:
    op.create_index("ix_messages_inbox_sent", "messages", ["inbox_id"], sqlite_where=_SENT, postgresql_where=_SENT)
    op.create_index("ix_messages_inbox_read", "messages", ["inbox_id"], sqlite_where=_READ, postgresql_where=_READ)


def downgrade() -> None:
    op.drop_index("ix_messages_inbox_read", "messages")
    op.drop_index("ix_messages_inbox_sent", "messages")
