"""The content-addressed blob store (issue 19): each tenant's bytes once, by SHA-256, counted.

Blobs live in the database (`blobs` and 1 MiB `blob_chunks`), so a backup, a PostgreSQL
cluster and an erasure see them with everything else. A blob is per tenant, never shared across
tenants: deduplication across tenants would tell one tenant what another stores (a blob that
already exists answers faster) and would make one tenant's erasure depend on another's files.

`refcount` is the number of file versions pointing at a blob. `acquire` adds one, `release`
removes one and deletes the blob at zero. Storage accounting follows the blob, not the file:
the `files_bytes` gauge (appliance/services/governance/usage.py) grows by a blob's size when it
is first stored and shrinks when it goes, so two files with the same bytes count once.

Writers stream: `BlobWriter` takes bytes in any pieces, writes each full chunk at once with a
core INSERT (nothing stays in the session's identity map) and hashes as it goes, so a 200 MiB
upload needs about one chunk of memory. Readers stream too (`iter_range`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import PayloadTooLargeError
from appliance.ids import new_id
from appliance.models import Attachment, Blob, BlobChunk, Message
from appliance.services.governance import usage

CHUNK = 1024 * 1024


class BlobWriter:
    """Streams bytes into a new blob; `finish` names it by digest, or reuses the tenant's blob
    with the same digest (its chunks then go again, in the same transaction)."""

    def __init__(self, db: Session, tenant_id: str, inbox_id: str, limit: int) -> None:
        self.db, self.limit = db, limit
        self.blob = Blob(id=new_id("blb"), tenant_id=tenant_id, inbox_id=inbox_id, size=0, refcount=0,
                         state="writing", created_at=utcnow())
        self.blob.sha256 = "writing:" + self.blob.id
        db.add(self.blob)
        db.flush()
        self.hasher = hashlib.sha256()
        self.pending = bytearray()
        self.size = 0
        self.seq = 0

    def write(self, data: bytes) -> None:
        """Add bytes; every full chunk goes to the store at once."""
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLargeError(f"A file may be at most {self.limit} bytes.",
                                       fix=f"Keep files under {self.limit} bytes (setting files_max_bytes).")
        self.hasher.update(data)
        self.pending += data
        while len(self.pending) >= CHUNK:
            self._put(bytes(self.pending[:CHUNK]))
            del self.pending[:CHUNK]

    def _put(self, data: bytes) -> None:
        self.db.execute(insert(BlobChunk), [{"blob_id": self.blob.id, "seq": self.seq, "data": data}])
        self.seq += 1

    def finish(self) -> tuple[Blob, bool]:
        """The stored blob and whether it is new (False: the tenant already had these bytes)."""
        if self.pending or self.seq == 0:
            self._put(bytes(self.pending))
            self.pending = bytearray()
        digest = self.hasher.hexdigest()
        existing = self.db.scalar(select(Blob).where(Blob.tenant_id == self.blob.tenant_id, Blob.sha256 == digest))
        if existing is not None:
            discard(self.db, self.blob)
            return existing, False
        self.blob.sha256, self.blob.size, self.blob.state = digest, self.size, "ready"
        self.db.flush()
        return self.blob, True


def find(db: Session, tenant_id: str, sha256: str) -> Blob | None:
    """The tenant's blob with this digest, if it has one."""
    return db.scalar(select(Blob).where(Blob.tenant_id == tenant_id, Blob.sha256 == sha256))


def store_bytes(db: Session, tenant_id: str, inbox_id: str, data: bytes, limit: int) -> tuple[Blob, bool]:
    """Bytes already in memory (a base64 or text body, an attachment): one blob, reused when known."""
    existing = find(db, tenant_id, hashlib.sha256(data).hexdigest())
    if existing is not None:
        return existing, False
    writer = BlobWriter(db, tenant_id, inbox_id, limit)
    for start in range(0, len(data), CHUNK):
        writer.write(data[start:start + CHUNK])
    return writer.finish()


def discard(db: Session, blob: Blob) -> None:
    """Drop a blob and its chunks (an unreferenced or abandoned one)."""
    db.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob.id))
    db.execute(delete(Blob).where(Blob.id == blob.id))
    db.expunge(blob)


def acquire(db: Session, blob: Blob, new: bool = False) -> None:
    """One more file reference; the blob's bytes start counting in the files_bytes gauge with its
    first file reference (a blob only attachments used counted nowhere: mail counts its raw size).
    `new` is kept for callers; the returned count decides."""
    count = db.execute(update(Blob).where(Blob.id == blob.id).values(refcount=Blob.refcount + 1)
                       .returning(Blob.refcount)).scalar_one()
    if count == 1:
        usage.record(db, blob.tenant_id, usage.FILES_BYTES, blob.size, inbox_id=blob.inbox_id or None)
    db.expire(blob, ["refcount"])


def release(db: Session, blob_id: str) -> None:
    """One file reference fewer; at zero its bytes stop counting, and with no attachment either
    the blob and its chunks go."""
    counts = db.execute(update(Blob).where(Blob.id == blob_id).values(refcount=Blob.refcount - 1)
                        .returning(Blob.refcount, Blob.attachment_refs)).one_or_none()
    blob = db.get(Blob, blob_id, populate_existing=True)
    if blob is None or counts is None or counts[0] > 0:
        return
    usage.record(db, blob.tenant_id, usage.FILES_BYTES, -blob.size, inbox_id=blob.inbox_id or None)
    if counts[1] <= 0:
        discard(db, blob)


def read_all(db: Session, blob_id: str) -> bytes:
    """A (small) blob's bytes at once: for exports and the web UI's previews."""
    return b"".join(iter_range(db, blob_id, 0, None))


def iter_range(db: Session, blob_id: str, start: int, end: int | None) -> Iterator[bytes]:
    """The bytes [start, end) of a blob (end None: to its end), one chunk read at a time."""
    seq = start // CHUNK
    offset = start - seq * CHUNK
    while end is None or seq * CHUNK < end:
        data = db.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
        if data is None:
            return
        data = bytes(data)
        stop = len(data) if end is None else min(len(data), end - seq * CHUNK)
        piece = data[offset:stop]
        if piece:
            yield piece
        offset = 0
        seq += 1


# --- message attachments (issue 19) ----------------------------------------------------------------
MOVE_BATCH = 200  # attachments moved per backfill transaction: the write lock is held briefly


def _ensure(db: Session, tenant_id: str, inbox_id: str, contents: dict[str, bytes]) -> tuple[dict[str, str], set[str]]:
    """Blob ids for these contents (by digest) of one tenant, storing the missing ones; returns
    ({digest: blob id}, ids stored now). An insert that meets a concurrent one (PostgreSQL) waits
    for it and keeps the other's row (ON CONFLICT DO NOTHING), so one blob per digest stays."""
    found = dict(db.execute(select(Blob.sha256, Blob.id).where(Blob.tenant_id == tenant_id,
                                                               Blob.sha256.in_(list(contents)))).all())
    missing = {digest: new_id("blb") for digest in contents if digest not in found}
    if not missing:
        return found, set()
    dialect = db.get_bind().dialect.name
    insert_ = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(Blob)
    now = utcnow()
    db.execute(insert_.on_conflict_do_nothing(index_elements=["tenant_id", "sha256"]),
               [{"id": blob_id, "tenant_id": tenant_id, "inbox_id": inbox_id, "sha256": digest,
                 "size": len(contents[digest]), "refcount": 0, "attachment_refs": 0, "state": "ready",
                 "created_at": now} for digest, blob_id in missing.items()])
    found.update(db.execute(select(Blob.sha256, Blob.id).where(Blob.tenant_id == tenant_id,
                                                               Blob.sha256.in_(list(missing)))).all())
    stored = {blob_id for digest, blob_id in missing.items() if found[digest] == blob_id}
    for digest, blob_id in missing.items():
        if blob_id in stored:
            data = contents[digest]
            db.execute(insert(BlobChunk), [{"blob_id": blob_id, "seq": seq, "data": data[at:at + CHUNK]}
                                           for seq, at in enumerate(range(0, max(len(data), 1), CHUNK))])
    return found, stored


def _add_refs(db: Session, counts: dict[str, int]) -> None:
    for blob_id, n in counts.items():
        db.execute(update(Blob).where(Blob.id == blob_id).values(attachment_refs=Blob.attachment_refs + n))


def store_attachments(db: Session, rows: list[dict], owners: list[tuple[str, str]]) -> None:
    """New attachments rows (dicts with `content`) into the blob store: each gets `blob_id` and an
    empty `content`, and its blob one more attachment reference. owners: (tenant, inbox) per row."""
    by_tenant: dict[str, list[tuple[dict, str]]] = {}
    for row, (tenant_id, inbox_id) in zip(rows, owners):
        by_tenant.setdefault(tenant_id, []).append((row, inbox_id))
    for tenant_id, entries in by_tenant.items():
        digests = [hashlib.sha256(row["content"]).hexdigest() for row, _inbox in entries]
        ids, _new = _ensure(db, tenant_id, entries[0][1], {d: row["content"] for d, (row, _i) in zip(digests, entries)})
        counts: dict[str, int] = {}
        for digest, (row, _inbox) in zip(digests, entries):
            row["blob_id"], row["content"] = ids[digest], b""
            counts[ids[digest]] = counts.get(ids[digest], 0) + 1
        _add_refs(db, counts)


def attachment_bytes(db: Session, attachment: Any) -> bytes:
    """An attachment's decoded bytes, from its blob once moved, else from its own row (the
    backfill may not have reached it yet: readers take either source)."""
    if attachment.blob_id:
        return read_all(db, attachment.blob_id)
    return bytes(attachment.content)


def drop_attachments(db: Session, condition: Any) -> int:
    """Delete the attachments rows matching condition and release their blobs (a blob with no
    file and no attachment left goes). DELETE … RETURNING reads each row's blob_id as it is
    deleted, so a row the backfill moved concurrently is released too. Returns rows deleted."""
    gone = db.execute(delete(Attachment).where(condition).returning(Attachment.blob_id)
                      .execution_options(synchronize_session=False)).scalars().all()
    counts: dict[str, int] = {}
    for blob_id in gone:
        if blob_id:
            counts[blob_id] = counts.get(blob_id, 0) + 1
    for blob_id, n in counts.items():
        left = db.execute(update(Blob).where(Blob.id == blob_id).values(attachment_refs=Blob.attachment_refs - n)
                          .returning(Blob.refcount, Blob.attachment_refs)).one_or_none()
        if left is not None and left[0] <= 0 and left[1] <= 0:
            db.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
            db.execute(delete(Blob).where(Blob.id == blob_id))
    return len(gone)


def move_attachments(db: Session, batch: int = MOVE_BATCH) -> int:
    """One backfill batch: up to `batch` attachments still holding their bytes, oldest id first,
    into the blob store (their row then names the blob, its content emptied). Idempotent and
    resumable: only rows with no blob_id are read (a partial index holds exactly those), and each
    update re-checks it, so a row deleted or moved meanwhile is skipped. Returns rows read."""
    rows = db.execute(select(Attachment.id, Attachment.content, Message.tenant_id, Message.inbox_id)
                      .join(Message, Message.id == Attachment.message_id)
                      .where(Attachment.blob_id.is_(None)).order_by(Attachment.id).limit(batch)).all()
    by_tenant: dict[str, list] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    for tenant_id, entries in by_tenant.items():
        digests = [hashlib.sha256(bytes(row.content)).hexdigest() for row in entries]
        ids, stored = _ensure(db, tenant_id, entries[0].inbox_id,
                              {d: bytes(row.content) for d, row in zip(digests, entries)})
        counts = {blob_id: 0 for blob_id in stored}
        for digest, row in zip(digests, entries):
            moved = db.execute(update(Attachment).where(Attachment.id == row.id, Attachment.blob_id.is_(None))
                               .values(blob_id=ids[digest], content=b"")
                               .execution_options(synchronize_session=False)).rowcount
            if moved:
                counts[ids[digest]] = counts.get(ids[digest], 0) + 1
        _add_refs(db, {blob_id: n for blob_id, n in counts.items() if n})
        for blob_id in [blob_id for blob_id, n in counts.items() if not n]:  # stored, then nobody took it
            db.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
            db.execute(delete(Blob).where(Blob.id == blob_id))
    return len(rows)
