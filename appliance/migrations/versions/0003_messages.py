"""messages: parsed fields, raw bytes, attachments, threads, search

Revision ID: 0003_messages
Revises: 0002_domains
Create Date: 2026-11-28 19:38:04.084061
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0003_messages'
down_revision = '0002_domains'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('threads',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_message_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_threads_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_threads_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_threads'))
    )
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.create_index('ix_threads_inbox_last', ['inbox_id', 'last_message_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_threads_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('attachments',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('content_id', sa.String(length=998), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_message_id'), ['message_id'], unique=False)

    op.create_table('message_raw',
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_raw_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_message_raw'))
    )
    op.create_table('message_search',
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_search_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_message_search'))
    )
    with op.batch_alter_table('message_search', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_search_inbox_id'), ['inbox_id'], unique=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_id_header', sa.String(length=998), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('in_reply_to', sa.String(length=998), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('references', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('date_header', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('from_email', sa.String(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('from_name', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('to_addrs', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('cc_addrs', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('reply_to_addrs', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('snippet', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('text_body', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('html_body', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('has_attachments', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('size', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('labels', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('authentication', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('parse_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('envelope_from', sa.String(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('envelope_to', sa.String(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('client_ip', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('received_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sent_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_messages_inbox_id', ['inbox_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_message_id_header'), ['message_id_header'], unique=False)



    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Full-text search: an FTS5 table kept in step with message_search by the services.
        op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
                   "message_id UNINDEXED, inbox_id UNINDEXED, document, tokenize='unicode61')")
    else:
        op.execute("CREATE INDEX ix_message_search_fts ON message_search "
                   "USING GIN (to_tsvector('simple', document))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE messages_fts")
    else:
        op.execute("DROP INDEX ix_message_search_fts")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_message_id_header'))
        batch_op.drop_index('ix_messages_inbox_id')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('received_at')
        batch_op.drop_column('client_ip')
        batch_op.drop_column('envelope_to')
        batch_op.drop_column('envelope_from')
        batch_op.drop_column('parse_error')
        batch_op.drop_column('authentication')
        batch_op.drop_column('labels')
        batch_op.drop_column('size')
        batch_op.drop_column('has_attachments')
        batch_op.drop_column('html_body')
        batch_op.drop_column('text_body')
        batch_op.drop_column('snippet')
        batch_op.drop_column('reply_to_addrs')
        batch_op.drop_column('cc_addrs')
        batch_op.drop_column('to_addrs')
        batch_op.drop_column('from_name')
        batch_op.drop_column('from_email')
        batch_op.drop_column('date_header')
        batch_op.drop_column('references')
        batch_op.drop_column('in_reply_to')
        batch_op.drop_column('message_id_header')

    with op.batch_alter_table('message_search', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_search_inbox_id'))

    op.drop_table('message_search')
    op.drop_table('message_raw')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_message_id'))

    op.drop_table('attachments')
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_threads_tenant_id'))
        batch_op.drop_index('ix_threads_inbox_last')

    op.drop_table('threads')
