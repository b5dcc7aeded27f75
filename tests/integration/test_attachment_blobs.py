"""Issue 19: message attachments live in the content-addressed blob store. New mail stores them as
blobs (once per tenant, counted per attachment), the worker's backfill moves attachments stored
the old way (bytes in their own row) batch by batch, downloads stay byte-identical through the
API and IMAP, and deleting or erasing messages releases their blobs. SQLite and PostgreSQL."""
from __future__ import annotations

import email
import email.policy

from sqlalchemy import func, select, update

from appliance.models import Attachment, Blob, BlobChunk, Message
from appliance.services.governance import erasure, usage
from appliance.services.workspace import blobs
from appliance.worker import Worker
from tests.api.test_messages import build_mail, deliver
from tests.integration.imap_fixtures import imap_server, mailbox, tls_files  # noqa: F401
from tests.integration.test_imap import logged_in

PDF = b"%PDF-1.4 invoice " + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 9


def _mail(subject: str, *parts: tuple[str, str, bytes]) -> bytes:
    return build_mail(subject=subject, attachments=parts)


def _rows(store) -> list[Attachment]:
    with store.session() as db:
        rows = list(db.scalars(select(Attachment).order_by(Attachment.id)))
        db.expunge_all()
        return rows


def _blob_counts(store) -> dict[str, tuple[int, int]]:
    """{sha256: (refcount, attachment_refs)} of every blob."""
    with store.session() as db:
        return {sha: (refs, att) for sha, refs, att in
                db.execute(select(Blob.sha256, Blob.refcount, Blob.attachment_refs)).all()}


def _chunks(store) -> int:
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(BlobChunk))


def _make_old(store) -> None:
    """Turn every attachment back into one stored the old way (its bytes in its row, no blob),
    as mail received before migration 0039 is, and drop the blobs."""
    with store.session() as db:
        for row in list(db.scalars(select(Attachment))):
            data = blobs.read_all(db, row.blob_id)
            db.execute(update(Attachment).where(Attachment.id == row.id).values(blob_id=None, content=data))
        for tenant_id in set(db.scalars(select(Blob.tenant_id))):
            blobs.drop_tenant(db, tenant_id)


def _download(client, agent, message_id: str, attachment_id: str) -> bytes:
    got = client.get(f"/v1/messages/{message_id}/attachments/{attachment_id}/", headers=agent.auth)
    assert got.status_code == 200, got.get_data(as_text=True)
    return got.data


def _sha(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_new_mail_stores_attachments_as_blobs_once_per_tenant(client, world, store) -> None:
    owner = world.owner()
    inbox_id, other_inbox = world.inbox(owner), world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read"])
    first = deliver(world, inbox_id, _mail("One", ("invoice.pdf", "application/pdf", PDF)))
    deliver(world, inbox_id, _mail("Two", ("same.pdf", "application/pdf", PDF), ("logo.png", "image/png", PNG)))
    deliver(world, other_inbox, _mail("Three", ("again.pdf", "application/pdf", PDF)))
    rows = _rows(store)
    assert len(rows) == 4 and all(row.blob_id and bytes(row.content) == b"" for row in rows)
    # Three messages carry the PDF: one blob, three attachment references, no file reference.
    assert _blob_counts(store) == {_sha(PDF): (0, 3), _sha(PNG): (0, 1)}
    with store.session() as db:
        assert blobs.read_all(db, rows[0].blob_id) in (PDF, PNG)
        # Mail counts by its raw size (mailbox_bytes), not as files: no files_bytes for attachments.
        assert usage.gauge(db, owner.tenant_id, usage.FILES_BYTES) == 0
    attachment = client.get(f"/v1/messages/{first}/", headers=agent.auth).json["attachments"][0]
    assert _download(client, agent, first, attachment["attachment_id"]) == PDF
    # Another tenant's identical attachment is its own blob (no dedup across tenants).
    stranger = world.owner()
    deliver(world, world.inbox(stranger), _mail("Four", ("x.pdf", "application/pdf", PDF)))
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Blob).where(Blob.sha256 == _sha(PDF))) == 2


def test_the_backfill_moves_old_attachments_which_still_download_identically(
        client, world, store, settings, imap_server, mailbox) -> None:  # noqa: F811
    agent = world.agent(mailbox.owner, mailbox.inbox_id, ["email:read", "files:write", "files:read"])
    ids = [deliver(world, mailbox.inbox_id, _mail(f"Old {n}", ("invoice.pdf", "application/pdf", PDF)))
           for n in range(3)]
    ids.append(deliver(world, mailbox.inbox_id, _mail("Old png", ("logo.png", "image/png", PNG))))
    _make_old(store)
    assert _blob_counts(store) == {} and all(row.blob_id is None for row in _rows(store))
    attachment = client.get(f"/v1/messages/{ids[0]}/", headers=agent.auth).json["attachments"][0]
    # Before the backfill, readers take the row's own bytes.
    assert _download(client, agent, ids[0], attachment["attachment_id"]) == PDF
    # The backfill in batches of two: each batch moves what it read, and a rerun finds nothing.
    with store.session() as db:
        assert blobs.move_attachments(db, batch=2) == 2
    assert sum(row.blob_id is not None for row in _rows(store)) == 2
    worker = Worker(store, settings)
    assert worker.move_attachments() == 2  # the worker's job takes the rest
    assert not worker.attachments_moved  # it read fewer than a batch, but has not seen none left
    assert worker.move_attachments() == 0 and worker.attachments_moved  # then it stops asking
    rows = _rows(store)
    assert all(row.blob_id and bytes(row.content) == b"" for row in rows)
    assert _blob_counts(store) == {_sha(PDF): (0, 3), _sha(PNG): (0, 1)}
    # New mail with the same bytes shares the moved blob.
    deliver(world, mailbox.inbox_id, _mail("New", ("invoice.pdf", "application/pdf", PDF)))
    assert _blob_counts(store)[_sha(PDF)] == (0, 4)
    # Byte-identical through the API and through IMAP FETCH.
    assert _download(client, agent, ids[0], attachment["attachment_id"]) == PDF
    imap = logged_in(imap_server(), mailbox)
    imap.select("INBOX")
    _, data = imap.uid("FETCH", "1:4", "(BODY.PEEK[])")
    fetched = [email.message_from_bytes(part[1], policy=email.policy.default) for part in data if isinstance(part, tuple)]
    imap.logout()
    payloads = [next(m.iter_attachments()).get_content() for m in fetched]
    assert payloads == [PDF, PDF, PDF, PNG]
    # Promoting a moved attachment shares its blob: no second copy, now counted as files.
    made = client.post("/v1/files/", json={"source_message_id": ids[0], "attachment_id": attachment["attachment_id"]},
                       headers=agent.auth)
    assert made.status_code == 201, made.get_data(as_text=True)
    assert _blob_counts(store)[_sha(PDF)] == (1, 4)
    with store.session() as db:
        assert usage.gauge(db, mailbox.owner.tenant_id, usage.FILES_BYTES) == len(PDF)


def test_promoting_an_attachment_not_yet_moved_still_works(client, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read", "files:write", "files:read"])
    message_id = deliver(world, inbox_id, _mail("Old", ("invoice.pdf", "application/pdf", PDF)))
    _make_old(store)
    attachment = client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json["attachments"][0]
    made = client.post("/v1/files/", json={"source_message_id": message_id, "attachment_id": attachment["attachment_id"]},
                       headers=agent.auth)
    assert made.status_code == 201 and _blob_counts(store) == {_sha(PDF): (1, 0)}
    with store.session() as db:
        assert blobs.move_attachments(db) == 1
    assert _blob_counts(store) == {_sha(PDF): (1, 1)}  # the backfill found the file's blob
    assert client.get(f"/v1/files/{made.json['file_id']}/content/", headers=agent.auth).data == PDF


def test_deleting_messages_releases_their_blobs(client, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read", "email:write", "files:write", "files:read"])
    first = deliver(world, inbox_id, _mail("One", ("invoice.pdf", "application/pdf", PDF)))
    second = deliver(world, inbox_id, _mail("Two", ("invoice.pdf", "application/pdf", PDF), ("logo.png", "image/png", PNG)))
    assert _blob_counts(store) == {_sha(PDF): (0, 2), _sha(PNG): (0, 1)}
    assert client.delete(f"/v1/messages/{first}/", headers=agent.auth).status_code == 204
    assert _blob_counts(store) == {_sha(PDF): (0, 1), _sha(PNG): (0, 1)}
    attachment = client.get(f"/v1/messages/{second}/", headers=agent.auth).json["attachments"][0]
    made = client.post("/v1/files/", json={"source_message_id": second, "attachment_id": attachment["attachment_id"]},
                       headers=agent.auth)
    assert made.status_code == 201 and _blob_counts(store)[_sha(PDF)] == (1, 1)
    assert client.delete(f"/v1/messages/{second}/", headers=agent.auth).status_code == 204
    # The PNG had only the message: gone with its chunks; the PDF stays for the file.
    assert _blob_counts(store) == {_sha(PDF): (1, 0)} and _chunks(store) == 1
    assert client.get(f"/v1/files/{made.json['file_id']}/content/", headers=agent.auth).data == PDF
    assert client.delete(f"/v1/files/{made.json['file_id']}/", headers=agent.auth).status_code == 204
    assert _blob_counts(store) == {} and _chunks(store) == 0
    with store.session() as db:
        assert usage.gauge(db, owner.tenant_id, usage.FILES_BYTES) == 0


def test_erasure_and_retention_release_moved_and_unmoved_attachments(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    deliver(world, inbox_id, _mail("Old", ("invoice.pdf", "application/pdf", PDF)))
    _make_old(store)
    deliver(world, inbox_id, _mail("New", ("invoice.pdf", "application/pdf", PDF), ("logo.png", "image/png", PNG)))
    assert _blob_counts(store) == {_sha(PDF): (0, 1), _sha(PNG): (0, 1)}
    with store.session() as db:  # what retention and an erasure run for the tenant's messages
        assert erasure.remove_messages(db, owner.tenant_id, Message.inbox_id == inbox_id) == 2
    assert _rows(store) == [] and _blob_counts(store) == {} and _chunks(store) == 0


def test_a_row_deleted_while_its_batch_runs_is_skipped_and_its_new_blob_dropped(world, store, monkeypatch) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    deliver(world, inbox_id, _mail("Kept", ("invoice.pdf", "application/pdf", PDF)))
    deliver(world, inbox_id, _mail("Deleted", ("logo.png", "image/png", PNG)))
    _make_old(store)
    ensure = blobs._ensure

    def deleted_meanwhile(db, *args, **kwargs):  # noqa: ANN001, ANN202 - as a concurrent DELETE would
        found = ensure(db, *args, **kwargs)
        db.execute(Attachment.__table__.delete().where(Attachment.filename == "logo.png"))
        return found

    monkeypatch.setattr(blobs, "_ensure", deleted_meanwhile)
    with store.session() as db:
        assert blobs.move_attachments(db) == 2  # read two, moved one
    # Only the kept row references a blob; the blob stored for the deleted row went again.
    assert _blob_counts(store) == {_sha(PDF): (0, 1)} and _chunks(store) == 1


def test_migration_0039_goes_down_and_up_again_keeping_every_attachment(client, world, store, settings) -> None:
    from sqlalchemy import text

    from tests.helpers import alembic

    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read"])
    message_id = deliver(world, inbox_id, _mail("Kept", ("invoice.pdf", "application/pdf", PDF)))
    alembic(store, "downgrade", "0038_imports")
    with store.engine.connect() as conn:  # the bytes came back into the row; the unused blob went
        assert [bytes(c) for c in conn.execute(text("SELECT content FROM attachments")).scalars()] == [PDF]
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 0
    alembic(store, "upgrade", "head")
    assert [row.blob_id for row in _rows(store)] == [None]
    assert Worker(store, settings).move_attachments() == 1
    attachment = client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json["attachments"][0]
    assert _download(client, agent, message_id, attachment["attachment_id"]) == PDF
    assert _blob_counts(store) == {_sha(PDF): (0, 1)}
