"""Files (issue 19): the content-addressed blob store, folders, files, their versions and rows.

A blob is one tenant's copy of some bytes, named by their SHA-256 and kept in 1 MiB chunks in
`blob_chunks`, so neither an upload nor a download ever needs the whole content in memory.
`refcount` counts the file versions that point at it; at zero the blob and its chunks go.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models.base import Base, UTCDateTime


class Blob(Base):
    """Bytes stored once per tenant (unique tenant and sha256). `state` is `writing` while an
    upload streams its chunks in (its sha256 is then a placeholder), `ready` after."""

    __tablename__ = "blobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The inbox whose write stored it first: its files_bytes gauge counts the bytes (once).
    inbox_id: Mapped[str] = mapped_column(String(40), default="")
    sha256: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    refcount: Mapped[int] = mapped_column(Integer, default=0)
    # Message attachments pointing at it (issue 19); the blob goes when both counts are zero.
    attachment_refs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where the bytes are: `db` (blob_chunks) or `dir` (one file under the blob_dir setting).
    location: Mapped[str] = mapped_column(String(8), default="db", server_default="db")
    state: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_blobs_tenant_sha256", Blob.tenant_id, Blob.sha256, unique=True)


class BlobChunk(Base):
    """One chunk of a blob's bytes, in order (seq from 0)."""

    __tablename__ = "blob_chunks"
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Folder(Base):
    """A folder of one inbox's files; parent_key is the parent's id or '' at the top, so one
    unique index refuses two folders of the same name side by side on both backends."""

    __tablename__ = "folders"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    parent_key: Mapped[str] = mapped_column(String(40), default="")
    name: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("uq_folders_inbox_parent_name", Folder.inbox_id, Folder.parent_key, Folder.name, unique=True)


class File(Base):
    """A named file of one inbox; its current version's digest, size and type are copied here."""

    __tablename__ = "files"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    folder_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    name: Mapped[str] = mapped_column(String(255))
    file_type: Mapped[str] = mapped_column(String(16), default="other")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    instructions: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String(80), default="")  # usr_/tok_/system: id
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_files_inbox_folder", File.inbox_id, File.folder_id, File.id)


class FileVersion(Base):
    """One version of a file's content; source_* name the attachment it was promoted from."""

    __tablename__ = "file_versions"
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # No ON DELETE: a blob goes only at refcount 0; a tenant's deletion takes both in one statement.
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    created_by: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    source_message_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source_attachment_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class FileRow(Base):
    """A row of a spreadsheet file: free-form columns, and the message it came from."""

    __tablename__ = "file_rows"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    source_message_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


Index("ix_file_rows_file_id", FileRow.file_id, FileRow.id)
