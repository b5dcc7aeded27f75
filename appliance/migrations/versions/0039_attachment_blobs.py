"""attachment_blobs: attachments point at the blob store (attachments.blob_id, blobs.attachment_refs, blobs.location)

Only nullable or defaulted columns and one partial index that old rows fill: no table rewrite, the
appliance keeps serving. The worker moves old attachments' bytes into blobs afterwards, in small
batches (appliance/services/workspace/blobs.py `move_attachments`).

Revision ID: 0039_attachment_blobs
Revises: 0038_imports
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0039_attachment_blobs'
down_revision = '0038_imports'
branch_labels = None
depends_on = None

_UNMOVED = sa.text('blob_id IS NULL')


def upgrade() -> None:
    op.add_column('attachments', sa.Column('blob_id', sa.String(length=40), nullable=True))
    op.add_column('blobs', sa.Column('attachment_refs', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('blobs', sa.Column('location', sa.String(length=8), nullable=False, server_default='db'))
    op.create_index('ix_attachments_unmoved', 'attachments', ['id'], sqlite_where=_UNMOVED,
                    postgresql_where=_UNMOVED)


def downgrade() -> None:
    # Moved attachments' bytes come back from their blobs first, so nothing is lost going down;
    # bytes in a blob directory cannot be read from here: move them back by hand first.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM blobs WHERE location = 'dir'")).scalar():
        raise RuntimeError('blobs live in the blob_dir directory: downgrading past 0039 would lose them')
    moved = bind.execute(sa.text('SELECT id, blob_id FROM attachments WHERE blob_id IS NOT NULL')).all()
    for attachment_id, blob_id in moved:
        data = b''.join(bytes(row[0]) for row in bind.execute(
            sa.text('SELECT data FROM blob_chunks WHERE blob_id = :b ORDER BY seq'), {'b': blob_id}))
        bind.execute(sa.text('UPDATE attachments SET content = :c WHERE id = :i'), {'c': data, 'i': attachment_id})
    bind.execute(sa.text('DELETE FROM blob_chunks WHERE blob_id IN (SELECT id FROM blobs WHERE refcount <= 0)'))
    bind.execute(sa.text('DELETE FROM blobs WHERE refcount <= 0'))
    op.drop_index('ix_attachments_unmoved', table_name='attachments')
    with op.batch_alter_table('blobs') as batch_op:
        batch_op.drop_column('attachment_refs')
        batch_op.drop_column('location')
    with op.batch_alter_table('attachments') as batch_op:
        batch_op.drop_column('blob_id')
