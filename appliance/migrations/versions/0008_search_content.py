"""search content: on SQLite the full-text index keeps no copy of the message's text

Before, every received message's text was written three times inside the receiving transaction
(which on SQLite holds the database's one write lock): in messages.text_body, in
message_search.document (subject, addresses and the text) and again in messages_fts, which kept
its own content. For a 100 KiB message that was 200 KiB more to write, sync and checkpoint.

SQLite now:
- message_search gets `search_rowid INTEGER PRIMARY KEY` (a rowid that VACUUM never renumbers)
  and keeps message_id unique; its `document` holds only the head: the subject line and the
  addresses line. The table is rebuilt to get the column, and old documents are cut to their
  first two lines.
- messages_fts is an external-content FTS5 table over the view message_search_fts: the head from
  message_search, the body from messages.text_body (its first 100,000 characters, as before), and
  the inbox id as one token (`inbox_key`, the per-inbox filter of migration 0004). It stores only
  the index.
- Triggers keep the index in step, whoever writes: a search row inserted is indexed, one deleted
  is removed from the index with the values it was indexed with, one updated both; a message
  deleted (by the services or by a cascade) takes its search row first, while its text is still
  there to unindex; a message whose text_body changes is reindexed. No code writes messages_fts.

PostgreSQL: nothing changes (message_search.document stays subject, addresses and text, behind
its generated tsvector column).

Revision ID: 0008_search_content
Revises: 0007_webui
Create Date: 2026-11-29
"""
from alembic import op


revision = '0008_search_content'
down_revision = '0007_webui'
branch_labels = None
depends_on = None

BODY = "substr({0}, 1, 100000)"  # as inbound.BODY_INDEXED: characters of the text that are searched
_FTS_COLUMNS = "rowid, message_id, inbox_id, inbox_key, head, body"


def _fts_values(search: str, body: str) -> str:
    """The messages_fts values of a message_search row (alias search) and its message's text."""
    return (f"{search}.search_rowid, {search}.message_id, {search}.inbox_id, replace({search}.inbox_id, '_', ''), "
            f"{search}.document, {BODY.format(body)}")


def _text_of(search: str) -> str:
    return f"(SELECT text_body FROM messages WHERE messages.id = {search}.message_id)"


TRIGGERS = {
    "message_search_indexed": "AFTER INSERT ON message_search BEGIN "
    f"INSERT INTO messages_fts ({_FTS_COLUMNS}) VALUES ({_fts_values('new', _text_of('new'))}); END",
    "message_search_unindexed": "AFTER DELETE ON message_search BEGIN "
    f"INSERT INTO messages_fts (messages_fts, {_FTS_COLUMNS}) VALUES ('delete', {_fts_values('old', _text_of('old'))}); END",
    "message_search_reindexed": "AFTER UPDATE ON message_search BEGIN "
    f"INSERT INTO messages_fts (messages_fts, {_FTS_COLUMNS}) VALUES ('delete', {_fts_values('old', _text_of('old'))}); "
    f"INSERT INTO messages_fts ({_FTS_COLUMNS}) VALUES ({_fts_values('new', _text_of('new'))}); END",
    # Before the message goes: its search row, while the text it was indexed with is still there.
    "messages_unindexed": "BEFORE DELETE ON messages BEGIN "
    "DELETE FROM message_search WHERE message_id = old.id; END",
    "messages_text_reindexed": "AFTER UPDATE OF text_body ON messages WHEN old.text_body IS NOT new.text_body BEGIN "
    f"INSERT INTO messages_fts (messages_fts, {_FTS_COLUMNS}) SELECT 'delete', {_fts_values('s', 'old.text_body')} "
    "FROM message_search AS s WHERE s.message_id = old.id; "
    f"INSERT INTO messages_fts ({_FTS_COLUMNS}) SELECT {_fts_values('s', 'new.text_body')} "
    "FROM message_search AS s WHERE s.message_id = new.id; END",
}

# The first two lines of an old document (subject, addresses): its head.
_REST = "substr(document, instr(document, char(10)) + 1)"
_HEAD = (f"CASE WHEN instr(document, char(10)) = 0 THEN document "
         f"WHEN instr({_REST}, char(10)) = 0 THEN document "
         f"ELSE substr(document, 1, instr(document, char(10)) + instr({_REST}, char(10)) - 1) END")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TABLE messages_fts")
    op.execute("CREATE TABLE message_search_new ("
               "search_rowid INTEGER NOT NULL PRIMARY KEY, "
               "message_id VARCHAR(40) NOT NULL, "
               "inbox_id VARCHAR(40) NOT NULL, "
               "document TEXT NOT NULL, "
               "CONSTRAINT uq_message_search_message_id UNIQUE (message_id), "
               "CONSTRAINT fk_message_search_message_id_messages FOREIGN KEY(message_id) "
               "REFERENCES messages (id) ON DELETE CASCADE)")
    op.execute("INSERT INTO message_search_new (message_id, inbox_id, document) "
               f"SELECT message_id, inbox_id, {_HEAD} FROM message_search ORDER BY message_id")
    op.execute("DROP TABLE message_search")
    op.execute("ALTER TABLE message_search_new RENAME TO message_search")
    op.execute("CREATE INDEX ix_message_search_inbox_id ON message_search (inbox_id)")
    op.execute("CREATE VIEW message_search_fts AS SELECT s.search_rowid, s.message_id, s.inbox_id, "
               "replace(s.inbox_id, '_', '') AS inbox_key, s.document AS head, "
               f"{BODY.format('m.text_body')} AS body "
               "FROM message_search AS s JOIN messages AS m ON m.id = s.message_id")
    op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
               "message_id UNINDEXED, inbox_id UNINDEXED, inbox_key, head, body, "
               "content='message_search_fts', content_rowid='search_rowid', tokenize='unicode61')")
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    op.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP TABLE messages_fts")
    op.execute("DROP VIEW message_search_fts")
    op.execute("CREATE TABLE message_search_old ("
               "message_id VARCHAR(40) NOT NULL, "
               "inbox_id VARCHAR(40) NOT NULL, "
               "document TEXT NOT NULL, "
               "CONSTRAINT pk_message_search PRIMARY KEY (message_id), "
               "CONSTRAINT fk_message_search_message_id_messages FOREIGN KEY(message_id) "
               "REFERENCES messages (id) ON DELETE CASCADE)")
    op.execute("INSERT INTO message_search_old (message_id, inbox_id, document) "
               "SELECT s.message_id, s.inbox_id, s.document || char(10) || "
               f"coalesce({BODY.format('m.text_body')}, '') "
               "FROM message_search AS s JOIN messages AS m ON m.id = s.message_id")
    op.execute("DROP TABLE message_search")
    op.execute("ALTER TABLE message_search_old RENAME TO message_search")
    op.execute("CREATE INDEX ix_message_search_inbox_id ON message_search (inbox_id)")
    op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
               "message_id UNINDEXED, inbox_id UNINDEXED, inbox_key, message_key, document, "
               "tokenize='unicode61')")
    op.execute("INSERT INTO messages_fts (message_id, inbox_id, inbox_key, message_key, document) "
               "SELECT message_id, inbox_id, replace(inbox_id, '_', ''), replace(message_id, '_', ''), "
               "document FROM message_search")
