"""The content-addressed blob store (issue 19): each tenant's bytes once, by SHA-256, counted.

Blobs live in the database (`blobs` and 1 MiB `blob_chunks`), so a backup, a PostgreSQL
cluster and an erasure see them with everything else. A blob is per tenant, never shared across
tenants: deduplication across tenants would tell one tenant what another stores (a blob that
already exists answers faster) and would make one tenant's erasure depend on another's files.

`refcount` is the number of file versions pointing at a blob, `attachment_refs` the number of
message attachments (issue 19: `store_attachments` for new mail, `move_attachments` the worker's
backfill of old rows, `drop_attachments` when messages go). `acquire` adds a file reference,
`release` removes one; a blob goes when both counts are zero. Storage accounting follows the
blob, not the file: the `files_bytes` gauge (appliance/services/governance/usage.py) grows by a
blob's size with its first file reference and shrinks with its last, so two files with the same
bytes count once, and attachments (counted by their message's raw size) count nowhere as files.

With the `blob_dir` setting, new blobs keep their bytes in one file each under it instead of
`blob_chunks` (`location` "dir"): written, fsynced and renamed into place before the transaction
commits, removed after the commit that deletes their blob (or the rollback of the one that
wrote them). docs/files.md has the whole protocol.

Writers stream: `BlobWriter` takes bytes in any pieces, writes each full chunk at once with a
core INSERT (nothing stays in the session's identity map) and hashes as it goes, so a 200 MiB
upload needs about one chunk of memory. Readers stream too (`iter_range`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import IO, Any, Iterator

from sqlalchemy import bindparam, delete, event, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import PayloadTooLargeError, UnavailableError
from appliance.ids import new_id
from appliance.models import Attachment, Blob, BlobChunk, Message
from appliance.services.governance import usage

CHUNK = 1024 * 1024
_WRITTEN, _GARBAGE = "blob_files_written", "blob_files_garbage"  # session.info keys: paths to settle


# --- the blob directory (setting blob_dir) -------------------------------------------------------
def blob_dir(db: Session) -> Path | None:
    """Where new blobs' bytes go: the blob_dir setting (Store puts it in every session's info)."""
    return db.info.get("blob_dir")


def _required_dir(db: Session) -> Path:
    root = blob_dir(db)
    if root is None:
        raise UnavailableError("A blob's bytes are in the blob directory, but the blob_dir setting is unset.",
                               fix="The operator sets blob_dir (GENTBOX_BLOB_DIR) back to the blobs' directory.")
    return root


def path_of(root: Path, tenant_id: str, sha256: str, blob_id: str) -> Path:
    """A blob's file: named by its digest under its tenant's folder (the blob id keeps two
    concurrent writers of the same bytes, one of which will roll back, from sharing a file)."""
    return root / tenant_id / sha256[:2] / f"{sha256}-{blob_id}"


def _open_part(db: Session, root: Path, tenant_id: str, blob_id: str, data: bytes = b"") -> IO[bytes]:
    """A new file for a blob's bytes, beside where it will go; a rollback removes it."""
    folder = root / tenant_id / "partial"
    folder.mkdir(parents=True, exist_ok=True)
    file = open(folder / blob_id, "wb")  # noqa: SIM115 - closed by _close_part
    db.info.setdefault(_WRITTEN, []).append(Path(file.name))
    file.write(data)
    return file


def _close_part(db: Session, file: IO[bytes], final: Path | None) -> None:
    """Make a written blob file durable under its final name before the transaction commits:
    fsync the bytes, rename (atomic), fsync the folder. final None: throw it away."""
    part = Path(file.name)
    if final is None:
        file.close()
        part.unlink(missing_ok=True)
        return
    file.flush()
    os.fsync(file.fileno())
    file.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    db.info[_WRITTEN].append(final)
    for folder in {final.parent, part.parent}:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _file_range(db: Session, path: Path, start: int, end: int | None) -> Iterator[bytes]:
    with open(path, "rb") as file:
        file.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            piece = file.read(CHUNK if left is None else min(CHUNK, left))
            if not piece:
                return
            if left is not None:
                left -= len(piece)
            yield piece


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@event.listens_for(Session, "after_commit")
def _committed(db: Session) -> None:
    """The files of blobs deleted in the transaction go now that it is durable."""
    db.info.pop(_WRITTEN, None)
    for path in db.info.pop(_GARBAGE, ()):
        _remove(path)


@event.listens_for(Session, "after_rollback")
def _rolled_back(db: Session) -> None:
    """The files written for the transaction's new blobs go with it; deleted ones stay."""
    db.info.pop(_GARBAGE, None)
    for path in db.info.pop(_WRITTEN, ()):
        _remove(path)


class BlobWriter:
    """Streams bytes into a new blob; `finish` names it by digest, or reuses the tenant's blob
    with the same digest (its chunks then go again, in the same transaction)."""

    def __init__(self, db: Session, tenant_id: str, inbox_id: str, limit: int) -> None:
        self.db, self.limit = db, limit
        self.root = blob_dir(db)
        self.blob = Blob(id=new_id("blb"), tenant_id=tenant_id, inbox_id=inbox_id, size=0, refcount=0,
                         state="writing", created_at=utcnow(), location="dir" if self.root else "db")
        self.blob.sha256 = "writing:" + self.blob.id
        db.add(self.blob)
        db.flush()
        self.hasher = hashlib.sha256()
        self.pending = bytearray()
        self.size = 0
        self.seq = 0
        self.file = _open_part(db, self.root, tenant_id, self.blob.id) if self.root else None

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
        if self.file is not None:
            self.file.write(data)
        else:
            self.db.execute(insert(BlobChunk), [{"blob_id": self.blob.id, "seq": self.seq, "data": data}])
        self.seq += 1

    def finish(self) -> tuple[Blob, bool]:
        """The stored blob and whether it is new (False: the tenant already had these bytes)."""
        if self.pending or self.seq == 0:
            self._put(bytes(self.pending))
            self.pending = bytearray()
        digest = self.hasher.hexdigest()
        existing = self.db.scalar(select(Blob).where(Blob.tenant_id == self.blob.tenant_id, Blob.sha256 == digest))
        if self.file is not None:
            _close_part(self.db, self.file, None if existing is not None
                        else path_of(self.root, self.blob.tenant_id, digest, self.blob.id))
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
    _drop(db, [blob.id])
    db.expunge(blob)


def _drop(db: Session, blob_ids: list[str]) -> None:
    """Delete blobs with their chunks; a blob directory's files go once the transaction commits
    (a rollback keeps them: the rows come back)."""
    if not blob_ids:
        return
    root = blob_dir(db)
    if root is not None:
        rows = db.execute(select(Blob.id, Blob.tenant_id, Blob.sha256).where(Blob.id.in_(blob_ids),
                                                                           Blob.location == "dir")).all()
        db.info.setdefault(_GARBAGE, []).extend(path_of(root, r.tenant_id, r.sha256, r.id) for r in rows)
    db.execute(delete(BlobChunk).where(BlobChunk.blob_id.in_(blob_ids)))
    db.execute(delete(Blob).where(Blob.id.in_(blob_ids)))


def drop_tenant(db: Session, tenant_id: str) -> int:
    """Every blob of a tenant (its erasure): the rows now, its directory after the commit."""
    root = blob_dir(db)
    if root is not None:
        db.info.setdefault(_GARBAGE, []).append(root / tenant_id)
    return db.execute(delete(Blob).where(Blob.tenant_id == tenant_id).execution_options(synchronize_session=False)).rowcount


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
    where = db.execute(select(Blob.location, Blob.tenant_id, Blob.sha256).where(Blob.id == blob_id)).one_or_none()
    if where is not None and where.location == "dir":
        yield from _file_range(db, path_of(_required_dir(db), where.tenant_id, where.sha256, blob_id), start, end)
        return
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
    dialect, root = db.get_bind().dialect.name, blob_dir(db)
    insert_ = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(Blob)
    now = utcnow()
    db.execute(insert_.on_conflict_do_nothing(index_elements=["tenant_id", "sha256"]),
               [{"id": blob_id, "tenant_id": tenant_id, "inbox_id": inbox_id, "sha256": digest,
                 "size": len(contents[digest]), "refcount": 0, "attachment_refs": 0, "state": "ready",
                 "created_at": now, "location": "dir" if root else "db"} for digest, blob_id in missing.items()])
    found.update(db.execute(select(Blob.sha256, Blob.id).where(Blob.tenant_id == tenant_id,
                                                               Blob.sha256.in_(list(missing)))).all())
    stored = {blob_id for digest, blob_id in missing.items() if found[digest] == blob_id}
    for digest, blob_id in missing.items():
        if blob_id in stored and root is not None:
            _close_part(db, _open_part(db, root, tenant_id, blob_id, contents[digest]),
                        path_of(root, tenant_id, digest, blob_id))
        elif blob_id in stored:
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
    unused = []
    for blob_id, n in counts.items():
        left = db.execute(update(Blob).where(Blob.id == blob_id).values(attachment_refs=Blob.attachment_refs - n)
                          .returning(Blob.refcount, Blob.attachment_refs)).one_or_none()
        if left is not None and left[0] <= 0 and left[1] <= 0:
            unused.append(blob_id)
    _drop(db, unused)
    return len(gone)


_MOVE = (update(Attachment.__table__).where(Attachment.__table__.c.id == bindparam("aid"),
                                           Attachment.__table__.c.blob_id.is_(None))
         .values(blob_id=bindparam("bid"), content=b""))


def _point(db: Session, pairs: list[tuple[str, str]]) -> list[str]:
    """Point attachments (id, blob id) at their blobs where still unmoved; the blob id of each
    row moved. One executemany; only when a row was deleted meanwhile (fewer rows changed than
    sent; one backfill runs at a time, so no other moved it) the rows left are read back."""
    conn = db.connection()
    if conn.execute(_MOVE, [{"aid": a, "bid": b} for a, b in pairs]).rowcount == len(pairs):
        return [b for _a, b in pairs]
    return [b for a, b in pairs if conn.execute(select(Attachment.blob_id).where(Attachment.id == a)).scalar() == b]


def move_attachments(db: Session, batch: int = MOVE_BATCH) -> int | None:
    """One backfill batch: up to `batch` attachments still holding their bytes, oldest id first,
    into the blob store (their row then names the blob, its content emptied). Idempotent and
    resumable: only rows with no blob_id are read (a partial index holds exactly those), and each
    update re-checks it, so a row deleted or moved meanwhile is skipped. Returns rows read (0: none
    is left). On PostgreSQL one node backfills at a time (a transaction advisory lock): the others
    get None (another node is at it), not 0."""
    if db.get_bind().dialect.name == "postgresql" and not db.scalar(text("SELECT pg_try_advisory_xact_lock(7262619)")):
        return None
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
        for blob_id in _point(db, [(row.id, ids[digest]) for digest, row in zip(digests, entries)]):
            counts[blob_id] = counts.get(blob_id, 0) + 1
        _add_refs(db, {blob_id: n for blob_id, n in counts.items() if n})
        _drop(db, [blob_id for blob_id, n in counts.items() if not n])  # stored, then nobody took it
    return len(rows)
