"""message read indexes: lists in (inbox, time, id) order, search within one inbox

Both: an index on messages (inbox_id, created_at, id), the lists' order (newest first, the id
breaking ties) with the id in the index, so that a page is read in order off the index and a
search can test each id against its matches without reading the rows.

PostgreSQL: message_search keeps its document's tsvector in a stored generated column,
search_vector, with the GIN index on it instead of on the expression. Checking a row no longer
re-parses its document: a search with many matches in a large inbox re-parsed thousands when its
bitmap went lossy (650 ms for a sender in 5,000 of 64,000 messages), and the plan that walks the
inbox newest first and tests each message becomes cheap enough for the planner to choose.

SQLite: messages_fts gets two indexed columns, inbox_key and message_key, holding the inbox's and
the message's id as one token each. A search (`q`) then matches `inbox_key : "<inbox>" AND
document : (<words>)`, which FTS5 answers by intersecting the inbox's short token list with the
words' lists; before, it read every inbox's matches for the words and dropped the others' (with
1,000,000 messages, hundreds of milliseconds for a common word). Deleting a message's entry
finds it by its message_key token instead of scanning the table. FTS5 cannot add columns: the
table is rebuilt from message_search (minutes for a million messages).

Revision ID: 0004_message_read_indexes
Revises: 0004_outbound
Create Date: 2026-11-28
"""
from alembic import op


revision = '0004_message_read_indexes'
down_revision = '0004_outbound'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_inbox_created_id", "messages", ["inbox_id", "created_at", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE message_search ADD COLUMN search_vector tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', document)) STORED")
        op.execute("CREATE INDEX ix_message_search_vector ON message_search USING GIN (search_vector)")
        op.execute("DROP INDEX ix_message_search_fts")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE messages_fts")
        op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
                   "message_id UNINDEXED, inbox_id UNINDEXED, inbox_key, message_key, document, "
                   "tokenize='unicode61')")
        op.execute("INSERT INTO messages_fts (message_id, inbox_id, inbox_key, message_key, document) "
                   "SELECT message_id, inbox_id, replace(inbox_id, '_', ''), replace(message_id, '_', ''), "
                   "document FROM message_search")


def downgrade() -> None:
    op.drop_index("ix_messages_inbox_created_id", "messages")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_message_search_fts ON message_search "
                   "USING GIN (to_tsvector('simple', document))")
        op.execute("DROP INDEX ix_message_search_vector")
        op.execute("ALTER TABLE message_search DROP COLUMN search_vector")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE messages_fts")
        op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
                   "message_id UNINDEXED, inbox_id UNINDEXED, document, tokenize='unicode61')")
        op.execute("INSERT INTO messages_fts (message_id, inbox_id, document) "
                   "SELECT message_id, inbox_id, document FROM message_search")
