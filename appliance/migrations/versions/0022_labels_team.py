"""labels_team: templates, thread notes with their mentions, thread assignments (issue 16)

The label registry itself came with 0019; the team area adds the tenant's `templates`, the
`thread_notes` of a thread (expiring 90 days after they are written), `note_mentions` (the
inboxes a note mentions: their pending agenda items) and `thread_assignments`.

Revision ID: 0022_labels_team
Revises: 0021_contacts
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0022_labels_team'
down_revision = '0021_contacts'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime
_id = sa.String(length=40)


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def _indexes(table: str, indexes: dict) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name, columns in indexes.items():
            batch_op.create_index(name, columns, unique=False)


INDEXES = {
    'templates': {'ix_templates_tenant_id': ['tenant_id', 'id']},
    'thread_notes': {'ix_thread_notes_tenant_id': ['tenant_id', 'id'],
                     'ix_thread_notes_thread': ['thread_id', 'created_at'],
                     'ix_thread_notes_expires': ['expires_at']},
    'note_mentions': {'ix_note_mentions_tenant_id': ['tenant_id', 'id'], 'ix_note_mentions_inbox': ['inbox_id'],
                      'ix_note_mentions_note': ['note_id']},
    'thread_assignments': {'ix_thread_assignments_tenant_id': ['tenant_id', 'id'],
                           'ix_thread_assignments_thread': ['thread_id', 'revoked_at'],
                           'ix_thread_assignments_assignee': ['assignee_inbox_id', 'revoked_at']},
}


def upgrade() -> None:
    op.create_table('templates',
    sa.Column('id', _id, nullable=False),
    sa.Column('tenant_id', _id, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('templates', 'tenant_id', 'tenants'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_templates'))
    )
    op.create_table('thread_notes',
    sa.Column('id', _id, nullable=False),
    sa.Column('tenant_id', _id, nullable=False),
    sa.Column('thread_id', _id, nullable=False),
    sa.Column('author_inbox_id', _id, nullable=False),
    sa.Column('author_id', sa.String(length=80), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('mentions', sa.JSON(), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('expires_at', _dt(timezone=True), nullable=False),
    _fk('thread_notes', 'tenant_id', 'tenants'),
    _fk('thread_notes', 'thread_id', 'threads'),
    _fk('thread_notes', 'author_inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_thread_notes'))
    )
    op.create_table('note_mentions',
    sa.Column('id', _id, nullable=False),
    sa.Column('tenant_id', _id, nullable=False),
    sa.Column('note_id', _id, nullable=False),
    sa.Column('inbox_id', _id, nullable=False),
    _fk('note_mentions', 'tenant_id', 'tenants'),
    _fk('note_mentions', 'note_id', 'thread_notes'),
    _fk('note_mentions', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_note_mentions'))
    )
    op.create_table('thread_assignments',
    sa.Column('id', _id, nullable=False),
    sa.Column('tenant_id', _id, nullable=False),
    sa.Column('thread_id', _id, nullable=False),
    sa.Column('assignee_inbox_id', _id, nullable=False),
    sa.Column('assigned_by', sa.String(length=80), nullable=False),
    sa.Column('assigned_at', _dt(timezone=True), nullable=False),
    sa.Column('revoked_at', _dt(timezone=True), nullable=True),
    _fk('thread_assignments', 'tenant_id', 'tenants'),
    _fk('thread_assignments', 'thread_id', 'threads'),
    _fk('thread_assignments', 'assignee_inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_thread_assignments'))
    )
    for table, indexes in INDEXES.items():
        _indexes(table, indexes)


def downgrade() -> None:
    for table in reversed(list(INDEXES)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in INDEXES[table]:
                batch_op.drop_index(name)
        op.drop_table(table)
