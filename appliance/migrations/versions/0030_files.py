"""files: the blob store (blobs, blob_chunks), folders, files, file_versions, file_rows (issue 19)

`blobs` hold each tenant's bytes once by SHA-256 with a reference count, in 1 MiB `blob_chunks`;
`files` point at their current version, `file_versions` at a blob each; `folders` nest by
parent_key (unique name per parent); `file_rows` are a spreadsheet's rows.

Revision ID: 0030_files
Revises: 0029_broadcast
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0030_files'
down_revision = '0029_broadcast'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_{table}_tenant_id_tenants'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('sha256', sa.String(length=80), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('refcount', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    _tenant_fk('blobs'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blobs'))
    )
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.create_index('uq_blobs_tenant_sha256', ['tenant_id', 'sha256'], unique=True)
    op.create_table('blob_chunks',
    sa.Column('blob_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], name=op.f('fk_blob_chunks_blob_id_blobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('blob_id', 'seq', name=op.f('pk_blob_chunks'))
    )
    op.create_table('folders',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('parent_key', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    _tenant_fk('folders'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_folders_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_folders'))
    )
    with op.batch_alter_table('folders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_folders_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('uq_folders_inbox_parent_name', ['inbox_id', 'parent_key', 'name'], unique=True)
    op.create_table('files',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('folder_id', sa.String(length=40), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('file_type', sa.String(length=16), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _tenant_fk('files'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_files_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files'))
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('ix_files_inbox_folder', ['inbox_id', 'folder_id', 'id'], unique=False)
    op.create_table('file_versions',
    sa.Column('file_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('blob_id', sa.String(length=40), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('source_message_id', sa.String(length=40), nullable=True),
    sa.Column('source_attachment_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_file_versions_file_id_files'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], name=op.f('fk_file_versions_blob_id_blobs')),
    sa.PrimaryKeyConstraint('file_id', 'version', name=op.f('pk_file_versions'))
    )
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_file_versions_blob_id'), ['blob_id'], unique=False)
    op.create_table('file_rows',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('file_id', sa.String(length=40), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('source_message_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_file_rows_file_id_files'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file_rows'))
    )
    with op.batch_alter_table('file_rows', schema=None) as batch_op:
        batch_op.create_index('ix_file_rows_file_id', ['file_id', 'id'], unique=False)


def downgrade() -> None:
    for table in ('file_rows', 'file_versions', 'files', 'folders', 'blob_chunks', 'blobs'):
        op.drop_table(table)
