"""Issue 19: the blob_dir setting. With it, new blobs' bytes (files and attachments) are files under
the directory, named by digest, written and fsynced before their transaction commits; the
reference counts stay in the database; a blob's file goes once its last reference does (after
the commit), and a rolled-back write leaves no file. Without it (tests/integration/
test_attachment_blobs.py, tests/api/test_files.py) the bytes are blob_chunks rows. Both backends."""
from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import func, select

from appliance.models import Blob, BlobChunk
from appliance.services.workspace import blobs
from tests.api.test_messages import build_mail, deliver
from tests.integration.test_attachment_blobs import _make_old

PDF = b"%PDF-1.4 on disk " + bytes(range(256)) * 50


@pytest.fixture
def settings(make_settings, tmp_path):
    return make_settings(blob_dir=tmp_path / "blobs")


def _files(settings) -> dict[str, bytes]:
    """Every blob file under the directory (partial ones included), by name."""
    return {p.name: p.read_bytes() for p in settings.blob_dir.rglob("*") if p.is_file()}


def _rows(store) -> tuple[list[tuple[str, str]], int]:
    with store.session() as db:
        return (db.execute(select(Blob.sha256, Blob.location).order_by(Blob.sha256)).all(),
                db.scalar(select(func.count()).select_from(BlobChunk)))


def test_files_and_attachments_go_to_the_directory_and_leave_it_with_their_last_reference(
        client, world, store, settings) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read", "email:write", "files:read", "files:write"])
    message_id = deliver(world, inbox_id, build_mail(subject="Invoice", attachments=(("invoice.pdf", "application/pdf", PDF),)))
    made = client.post("/v1/files/", json={"name": "notes.txt", "content_base64": base64.b64encode(b"notes").decode()},
                       headers=agent.auth)
    assert made.status_code == 201, made.get_data(as_text=True)
    upload = client.post("/v1/files/upload/", query_string={"name": "big.bin"}, headers=agent.auth,
                         data={"file": (__import__("io").BytesIO(PDF * 3), "big.bin")}, content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_data(as_text=True)
    pdf, notes, big = (hashlib.sha256(b).hexdigest() for b in (PDF, b"notes", PDF * 3))
    assert _rows(store) == (sorted([(pdf, "dir"), (notes, "dir"), (big, "dir")]), 0)
    on_disk = _files(settings)
    assert {name.split("-")[0]: data for name, data in on_disk.items()} == {pdf: PDF, notes: b"notes", big: PDF * 3}
    with store.session() as db:
        row = db.scalar(select(Blob).where(Blob.sha256 == pdf))
        assert blobs.path_of(settings.blob_dir, owner.tenant_id, pdf, row.id).read_bytes() == PDF
    # Read back through the API: the attachment, the file, and a range of the upload.
    attachment = client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json["attachments"][0]
    assert client.get(f"/v1/messages/{message_id}/attachments/{attachment['attachment_id']}/",
                      headers=agent.auth).data == PDF
    assert client.get(f"/v1/files/{made.json['file_id']}/content/", headers=agent.auth).data == b"notes"
    ranged = client.get(f"/v1/files/{upload.json['file_id']}/content/", headers={**agent.auth, "Range": "bytes=10-4009"})
    assert ranged.status_code == 206 and ranged.data == (PDF * 3)[10:4010]
    # Promote the attachment (shares its file), delete the message: the file stays for the promoted one.
    promoted = client.post("/v1/files/", json={"source_message_id": message_id,
                                               "attachment_id": attachment["attachment_id"]}, headers=agent.auth)
    assert promoted.status_code == 201 and len(_files(settings)) == 3
    assert client.delete(f"/v1/messages/{message_id}/", headers=agent.auth).status_code == 204
    assert len(_files(settings)) == 3
    for file_id in (promoted.json["file_id"], made.json["file_id"], upload.json["file_id"]):
        assert client.delete(f"/v1/files/{file_id}/", headers=agent.auth).status_code == 204
    assert _files(settings) == {} and _rows(store) == ([], 0)


def test_a_rolled_back_write_leaves_no_file_and_the_backfill_writes_to_the_directory(world, store, settings) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with pytest.raises(RuntimeError), store.session() as db:
        blob, _new = blobs.store_bytes(db, owner.tenant_id, inbox_id, PDF, 10**9)
        blobs.acquire(db, blob)
        assert len(_files(settings)) == 1  # durable before the commit...
        raise RuntimeError("the transaction fails after the write")
    assert _files(settings) == {} and _rows(store) == ([], 0)  # ...and gone with the rollback
    deliver(world, inbox_id, build_mail(subject="Old", attachments=(("invoice.pdf", "application/pdf", PDF),)))
    _make_old(store)  # also deletes the blob rows: their file goes after the commit
    assert _files(settings) == {}
    with store.session() as db:
        assert blobs.move_attachments(db) == 1
    assert [name.split("-")[0] for name in _files(settings)] == [hashlib.sha256(PDF).hexdigest()]
    with store.session() as db:  # what a tenant's erasure runs for its blobs
        assert blobs.drop_tenant(db, owner.tenant_id) == 1
    assert _files(settings) == {} and not (settings.blob_dir / owner.tenant_id).exists()
