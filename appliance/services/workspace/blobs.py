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
from typing import Iterator

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import PayloadTooLargeError
from appliance.ids import new_id
from appliance.models import Blob, BlobChunk
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


def acquire(db: Session, blob: Blob, new: bool) -> None:
    """One more reference; a new blob's bytes start counting in the files_bytes gauge."""
    db.execute(update(Blob).where(Blob.id == blob.id).values(refcount=Blob.refcount + 1))
    if new:
        usage.record(db, blob.tenant_id, usage.FILES_BYTES, blob.size, inbox_id=blob.inbox_id or None)
    db.expire(blob, ["refcount"])


def release(db: Session, blob_id: str) -> None:
    """One reference fewer; at zero the blob and its chunks go and its bytes stop counting."""
    db.execute(update(Blob).where(Blob.id == blob_id).values(refcount=Blob.refcount - 1))
    blob = db.get(Blob, blob_id, populate_existing=True)
    if blob is not None and blob.refcount <= 0:
        usage.record(db, blob.tenant_id, usage.FILES_BYTES, -blob.size, inbox_id=blob.inbox_id or None)
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
