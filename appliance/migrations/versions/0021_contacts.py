"""contacts: contacts, their addresses and shares; substring search on both backends

`contacts` (one card of an inbox), `contact_emails` (its addresses, unique per inbox: one person is
one contact), `contact_shares` (offers and requests of cards between inboxes of one tenant).
`q` searches `contacts.search_text`: PostgreSQL through a pg_trgm GIN index (LIKE '%part%' is
indexed), SQLite through an FTS5 trigram table `contacts_fts` kept in step by triggers. An index
on messages (inbox_id, from_email) lets a contact's relationship be computed from its mail.

Revision ID: 0021_contacts
Revises: 0020_scheduler
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0021_contacts'
down_revision = '0020_scheduler'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime

_SQLITE_TRIGGERS = {
    "contacts_fts_ai": "AFTER INSERT ON contacts BEGIN "
    "INSERT INTO contacts_fts (contact_id, inbox_id, search_text) VALUES (new.id, new.inbox_id, new.search_text); END",
    "contacts_fts_au": "AFTER UPDATE OF search_text ON contacts BEGIN "
    "UPDATE contacts_fts SET search_text = new.search_text WHERE contact_id = old.id; END",
    "contacts_fts_ad": "AFTER DELETE ON contacts BEGIN DELETE FROM contacts_fts WHERE contact_id = old.id; END",
}


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('contacts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('uid', sa.String(length=255), nullable=True),
    sa.Column('full_name', sa.String(length=300), nullable=False),
    sa.Column('company', sa.String(length=300), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('phones', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('anniversaries', sa.JSON(), nullable=False),
    sa.Column('origin', sa.JSON(), nullable=False),
    sa.Column('search_text', sa.Text(), nullable=False),
    sa.Column('last_outbound_at', _dt(timezone=True), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('contacts', 'tenant_id', 'tenants'),
    _fk('contacts', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_contacts_inbox_name', ['inbox_id', 'full_name', 'id'], unique=False)
        batch_op.create_index('uq_contacts_inbox_uid', ['inbox_id', 'uid'], unique=True,
                              sqlite_where=sa.text('uid IS NOT NULL'), postgresql_where=sa.text('uid IS NOT NULL'))

    op.create_table('contact_emails',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('contact_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    _fk('contact_emails', 'contact_id', 'contacts'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_emails'))
    )
    with op.batch_alter_table('contact_emails', schema=None) as batch_op:
        batch_op.create_index('ix_contact_emails_contact_id', ['contact_id'], unique=False)
        batch_op.create_index('uq_contact_emails_inbox_address', ['inbox_id', 'address'], unique=True)

    op.create_table('contact_shares',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('from_inbox_id', sa.String(length=40), nullable=False),
    sa.Column('to_inbox_id', sa.String(length=40), nullable=False),
    sa.Column('contact_id', sa.String(length=40), nullable=True),
    sa.Column('contact_address', sa.String(length=320), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('result_contact_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('expires_at', _dt(timezone=True), nullable=False),
    sa.Column('resolved_at', _dt(timezone=True), nullable=True),
    _fk('contact_shares', 'tenant_id', 'tenants'),
    _fk('contact_shares', 'from_inbox_id', 'inboxes'),
    _fk('contact_shares', 'to_inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_shares'))
    )
    with op.batch_alter_table('contact_shares', schema=None) as batch_op:
        batch_op.create_index('ix_contact_shares_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_contact_shares_to', ['to_inbox_id', 'status'], unique=False)
        batch_op.create_index('ix_contact_shares_from', ['from_inbox_id', 'status'], unique=False)
        batch_op.create_index('ix_contact_shares_expires', ['expires_at'], unique=False)

    op.create_index('ix_messages_inbox_from', 'messages', ['inbox_id', 'from_email', 'created_at'])
    _search_index_up()


def _search_index_up() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE contacts_fts USING fts5("
                   "contact_id UNINDEXED, inbox_id UNINDEXED, search_text, tokenize='trigram')")
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_contacts_search_trgm ON contacts USING gin (search_text gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE contacts_fts")
    else:
        op.execute("DROP INDEX ix_contacts_search_trgm")
    op.drop_index('ix_messages_inbox_from', table_name='messages')
    op.drop_table('contact_shares')
    op.drop_table('contact_emails')
    op.drop_table('contacts')
