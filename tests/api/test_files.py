"""Issue 19, files (contract section 13): the blob store, promotion, versions, folders, names,
signed links, spreadsheets, the files cap and access. Every test runs on SQLite and PostgreSQL."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select

from appliance import clock
from appliance.models import Blob, BlobChunk, UsageCounter
from appliance.services.governance import usage
from tests.api.test_messages import build_mail, deliver
from tests.helpers import assert_error

PDF = b"%PDF-1.4 invoice " + bytes(range(256)) * 40


@pytest.fixture
def box(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["files:read", "files:write", "email:read", "email:write"])
    return owner, inbox_id, agent


def _blobs(store) -> int:
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(Blob))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _received_with_pdf(client, world, inbox_id, agent) -> tuple[str, str]:
    raw = build_mail(subject="Invoice", attachments=(("invoice.pdf", "application/pdf", PDF),))
    message_id = deliver(world, inbox_id, raw)
    full = client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json
    return message_id, full["attachments"][0]["attachment_id"]


# --- the blob store and promotion -----------------------------------------------------------------
def test_promoting_an_attachment_stores_one_blob_which_outlives_the_message(client, world, store, box):
    owner, inbox_id, agent = box
    message_id, attachment_id = _received_with_pdf(client, world, inbox_id, agent)
    made = client.post("/v1/files/", json={"source_message_id": message_id, "attachment_id": attachment_id},
                       headers=agent.auth)
    assert made.status_code == 201, made.get_data(as_text=True)
    file = made.json
    assert (file["name"], file["content_type"], file["size"]) == ("invoice.pdf", "application/pdf", len(PDF))
    assert file["sha256"] == hashlib.sha256(PDF).hexdigest() and file["file_id"].startswith("fil_")
    assert client.get(f"/v1/files/{file['file_id']}/content/", headers=agent.auth).data == PDF
    # Promoted again (a second file), the bytes are not stored again.
    again = client.post("/v1/files/", json={"source_message_id": message_id, "attachment_id": attachment_id,
                                            "name": "copy.pdf"}, headers=agent.auth)
    assert again.status_code == 201 and _blobs(store) == 1
    versions = client.get(f"/v1/files/{file['file_id']}/versions/", headers=agent.auth).json["results"]
    assert versions[0]["source_message_id"] == message_id and versions[0]["source_attachment_id"] == attachment_id
    # The message goes: the files and their blob stay.
    assert client.delete(f"/v1/messages/{message_id}/", headers=agent.auth).status_code == 204
    assert client.get(f"/v1/files/{file['file_id']}/content/", headers=agent.auth).data == PDF
    assert client.delete(f"/v1/files/{file['file_id']}/", headers=agent.auth).status_code == 204
    assert _blobs(store) == 1  # the second file still holds it
    assert client.delete(f"/v1/files/{again.json['file_id']}/", headers=agent.auth).status_code == 204
    assert _blobs(store) == 0
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(BlobChunk)) == 0


def test_a_promotion_names_an_attachment_of_the_callers_inbox(client, world, box):
    owner, inbox_id, agent = box
    message_id, attachment_id = _received_with_pdf(client, world, inbox_id, agent)
    other = world.agent(owner, world.inbox(owner), ["files:write"])
    resp = client.post("/v1/files/", json={"source_message_id": message_id, "attachment_id": attachment_id},
                       headers=other.auth)
    assert_error(resp, 404, "not_found")
    half = client.post("/v1/files/", json={"source_message_id": message_id}, headers=agent.auth)
    assert_error(half, 400, "validation_error", field="attachment_id")


def test_two_tenants_with_the_same_bytes_have_a_blob_each(client, world, store, box):
    owner, inbox_id, agent = box
    stranger = world.owner()
    theirs = world.agent(stranger, world.inbox(stranger), ["files:write"])
    for token in (agent, theirs):
        assert client.post("/v1/files/", json={"name": "same.bin", "content_base64": _b64(PDF)},
                           headers=token.auth).status_code == 201
    assert _blobs(store) == 2


# --- versions -----------------------------------------------------------------------------------------
def test_three_writes_give_three_versions_and_version_one_keeps_its_bytes(client, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/", json={"name": "notes.txt", "text": "one"}, headers=agent.auth).json
    fid = made["file_id"]
    assert client.patch(f"/v1/files/{fid}/", json={"text": "two"}, headers=agent.auth).json["version"] == 2
    third = client.patch(f"/v1/files/{fid}/", json={"content_base64": _b64(b"three")}, headers=agent.auth)
    assert third.status_code == 200 and third.json["version"] == 3
    versions = client.get(f"/v1/files/{fid}/versions/", headers=agent.auth).json["results"]
    assert [(v["version"], v["sha256"], v["size"]) for v in versions] == [
        (1, hashlib.sha256(b"one").hexdigest(), 3), (2, hashlib.sha256(b"two").hexdigest(), 3),
        (3, hashlib.sha256(b"three").hexdigest(), 5)]
    assert client.get(f"/v1/files/{fid}/content/?version=1", headers=agent.auth).data == b"one"
    assert client.get(f"/v1/files/{fid}/content/", headers=agent.auth).data == b"three"
    assert_error(client.get(f"/v1/files/{fid}/content/?version=4", headers=agent.auth), 404, "not_found")


def test_content_rules_and_list_filters(client, box):
    owner, inbox_id, agent = box
    both = client.post("/v1/files/", json={"name": "x", "text": "a", "content_base64": _b64(b"a")}, headers=agent.auth)
    assert_error(both, 400, "validation_error")
    bad = client.post("/v1/files/", json={"name": "x", "content_base64": "***"}, headers=agent.auth)
    assert_error(bad, 400, "validation_error", field="content_base64")
    nameless = client.post("/v1/files/", json={"text": "a"}, headers=agent.auth)
    assert_error(nameless, 400, "validation_error", field="name")
    for name, kind in (("Report Q1.docx", "document"), ("photo.png", "image"), ("report q2.docx", "document")):
        assert client.post("/v1/files/", json={"name": name, "file_type": kind, "text": name},
                           headers=agent.auth).status_code == 201
    found = client.get("/v1/files/?q=REPORT&file_type=document", headers=agent.auth).json["results"]
    assert [f["name"] for f in found] == ["Report Q1.docx", "report q2.docx"]
    assert client.get("/v1/files/?q=%25", headers=agent.auth).json["results"] == []  # % is literal
    page = client.get("/v1/files/?limit=2", headers=agent.auth).json
    rest = client.get(f"/v1/files/?limit=2&cursor={page['cursor']}", headers=agent.auth).json
    assert len(page["results"]) == 2 and [f["name"] for f in rest["results"]] == ["report q2.docx"]


# --- names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, stored", [
    ("../../etc/passwd", ".._.._etc_passwd"),
    ("invoice\u202egnp.exe", "invoicegnp.exe"),
    ('say "hi".txt', 'say "hi".txt'),
    ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),
    ("..", None),
])
def test_file_names_are_stored_and_served_safely(client, box, name, stored):
    owner, inbox_id, agent = box
    resp = client.post("/v1/files/", json={"name": name, "text": "x"}, headers=agent.auth)
    if stored is None:
        assert_error(resp, 400, "validation_error", field="name")
        return
    assert resp.status_code == 201 and resp.json["name"] == stored
    got = client.get(f"/v1/files/{resp.json['file_id']}/content/", headers=agent.auth)
    disposition = got.headers["Content-Disposition"]
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert "/" not in fallback and '"' not in fallback and all(c.isascii() and c.isprintable() for c in fallback)
    assert "filename*=UTF-8''" in disposition and "\u202e" not in disposition and "\r" not in disposition
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Security-Policy"].startswith("sandbox")


def test_a_nul_in_a_name_is_refused(client, box):
    owner, inbox_id, agent = box
    resp = client.post("/v1/files/", json={"name": "a\x00b.txt", "text": "x"}, headers=agent.auth)
    assert_error(resp, 400, "validation_error")


def test_html_content_is_not_served_as_html_to_run(client, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/", json={"name": "page.html", "text": "<script>alert(1)</script>"},
                       headers=agent.auth).json
    got = client.get(f"/v1/files/{made['file_id']}/content/", headers=agent.auth)
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in got.headers["Content-Security-Policy"]


# --- folders --------------------------------------------------------------------------------------------
def test_folders_nest_without_duplicates_or_cycles(client, box):
    owner, inbox_id, agent = box
    top = client.post("/v1/files/folders/", json={"name": "Invoices"}, headers=agent.auth)
    assert top.status_code == 201 and top.json["folder_id"].startswith("fld_")
    top_id = top.json["folder_id"]
    assert_error(client.post("/v1/files/folders/", json={"name": "Invoices"}, headers=agent.auth), 409, "conflict")
    child = client.post("/v1/files/folders/", json={"name": "2026", "parent_id": top_id}, headers=agent.auth).json
    grandchild = client.post("/v1/files/folders/", json={"name": "Q1", "parent_id": child["folder_id"]},
                             headers=agent.auth).json
    # The same name under another parent is fine; moving a folder under its own descendant is not.
    assert client.post("/v1/files/folders/", json={"name": "2026"}, headers=agent.auth).status_code == 201
    loop = client.patch(f"/v1/files/folders/{top_id}/", json={"parent_id": grandchild["folder_id"]}, headers=agent.auth)
    assert_error(loop, 400, "validation_error", field="parent_id")
    itself = client.patch(f"/v1/files/folders/{top_id}/", json={"parent_id": top_id}, headers=agent.auth)
    assert_error(itself, 400, "validation_error", field="parent_id")
    clash = client.post("/v1/files/folders/", json={"name": "Q1"}, headers=agent.auth).json
    moved_into_clash = client.patch(f"/v1/files/folders/{clash['folder_id']}/",
                                    json={"parent_id": child["folder_id"]}, headers=agent.auth)
    assert_error(moved_into_clash, 409, "conflict")
    made = client.post("/v1/files/", json={"name": "a.pdf", "text": "a", "folder_id": child["folder_id"]},
                       headers=agent.auth).json
    listed = client.get(f"/v1/files/?folder_id={child['folder_id']}", headers=agent.auth).json["results"]
    assert [f["file_id"] for f in listed] == [made["file_id"]]
    assert client.get("/v1/files/?folder_id=root", headers=agent.auth).json["results"] == []
    subs = client.get(f"/v1/files/folders/?parent_id={top_id}", headers=agent.auth).json["results"]
    assert [f["name"] for f in subs] == ["2026"]


# --- access ----------------------------------------------------------------------------------------------
def test_another_inbox_and_another_tenant_get_404_and_read_scope_cannot_write(client, world, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/", json={"name": "a.txt", "text": "a"}, headers=agent.auth).json
    fid = made["file_id"]
    sibling = world.agent(owner, world.inbox(owner), ["files:read", "files:write"])
    stranger = world.owner()
    outsider = world.agent(stranger, world.inbox(stranger), ["files:read", "files:write"])
    for token in (sibling, outsider):
        for method, path in (("GET", f"/v1/files/{fid}/"), ("GET", f"/v1/files/{fid}/content/"),
                             ("GET", f"/v1/files/{fid}/versions/"), ("DELETE", f"/v1/files/{fid}/")):
            assert_error(client.open(path, method=method, headers=token.auth), 404, "not_found")
        assert_error(client.patch(f"/v1/files/{fid}/", json={"name": "b"}, headers=token.auth), 404, "not_found")
        assert client.get("/v1/files/", headers=token.auth).json["results"] == []
    assert_error(client.get(f"/v1/files/{fid}/", query_string={"inbox_id": inbox_id}, headers=stranger.auth),
                 404, "not_found")
    reader = world.agent(owner, inbox_id, ["files:read"])
    assert client.get(f"/v1/files/{fid}/", headers=reader.auth).status_code == 200
    for resp in (client.post("/v1/files/", json={"name": "b", "text": "b"}, headers=reader.auth),
                 client.patch(f"/v1/files/{fid}/", json={"name": "b"}, headers=reader.auth),
                 client.delete(f"/v1/files/{fid}/", headers=reader.auth),
                 client.post("/v1/files/folders/", json={"name": "F"}, headers=reader.auth)):
        err = assert_error(resp, 403, "insufficient_scope")
        assert "files:write" in err["fix"]


def test_delete_and_move_need_a_manager_or_the_creating_token(client, world, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/", json={"name": "a.txt", "text": "a"}, headers=agent.auth).json
    folder = client.post("/v1/files/folders/", json={"name": "F"}, headers=agent.auth).json
    other = world.agent(owner, inbox_id, ["files:read", "files:write"])
    fid = made["file_id"]
    assert client.patch(f"/v1/files/{fid}/", json={"name": "renamed.txt"}, headers=other.auth).status_code == 200
    assert_error(client.patch(f"/v1/files/{fid}/", json={"folder_id": folder["folder_id"]}, headers=other.auth),
                 403, "forbidden")
    assert_error(client.delete(f"/v1/files/{fid}/", headers=other.auth), 403, "forbidden")
    moved = client.patch(f"/v1/files/{fid}/", json={"folder_id": folder["folder_id"]}, headers=agent.auth)
    assert moved.status_code == 200 and moved.json["folder_id"] == folder["folder_id"]
    assert client.delete(f"/v1/files/{fid}/", query_string={"inbox_id": inbox_id},
                         headers=owner.auth).status_code == 204


# --- signed links ----------------------------------------------------------------------------------------
def _link(client, agent, fid, **body):
    resp = client.post(f"/v1/files/{fid}/link/", json=body, headers=agent.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    url = urlparse(resp.json["url"])
    return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


def test_a_signed_link_works_without_a_token_and_takes_ranges(client, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/", json={"name": "big.bin", "content_base64": _b64(PDF * 200)},
                       headers=agent.auth).json
    data = PDF * 200
    path, query = _link(client, agent, made["file_id"])
    whole = client.get(path, query_string=query)
    assert whole.status_code == 200 and whole.data == data and whole.headers["Accept-Ranges"] == "bytes"
    start, end = 1024 * 1024 - 5, 1024 * 1024 + 10  # across the first chunk's end
    part = client.get(path, query_string=query, headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206 and part.data == data[start:end + 1]
    assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    tail = client.get(path, query_string=query, headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.data == data[-7:]
    beyond = client.get(path, query_string=query, headers={"Range": f"bytes={len(data) + 5}-"})
    assert beyond.status_code == 416


def test_an_altered_expired_or_deleted_link_fails(client, box):
    owner, inbox_id, agent = box
    fid = client.post("/v1/files/", json={"name": "a.txt", "text": "a"}, headers=agent.auth).json["file_id"]
    path, query = _link(client, agent, fid, expires_in=60)
    sig = query["signature"]
    flipped = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    assert_error(client.get(path, query_string={**query, "signature": flipped}), 403, "forbidden")
    assert_error(client.get(path, query_string={**query, "expires": str(int(query["expires"]) + 3600)}),
                 403, "forbidden")
    assert_error(client.get(path, query_string={**query, "version": "2"}), 403, "forbidden")
    clock.advance(dt.timedelta(seconds=61))
    assert_error(client.get(path, query_string=query), 403, "forbidden")
    clock.reset()
    assert client.get(path, query_string=query).status_code == 200
    assert client.delete(f"/v1/files/{fid}/", headers=agent.auth).status_code == 204
    assert_error(client.get(path, query_string=query), 404, "not_found")
    too_long = client.post(f"/v1/files/{fid}/link/", json={"expires_in": 8 * 86400}, headers=agent.auth)
    assert too_long.status_code in (400, 404)


def test_a_link_serves_the_version_it_was_made_for(client, box):
    owner, inbox_id, agent = box
    fid = client.post("/v1/files/", json={"name": "a.txt", "text": "old"}, headers=agent.auth).json["file_id"]
    path, query = _link(client, agent, fid)
    client.patch(f"/v1/files/{fid}/", json={"text": "new"}, headers=agent.auth)
    assert client.get(path, query_string=query).data == b"old"


# --- spreadsheets ------------------------------------------------------------------------------------------
def test_spreadsheet_rows_export_as_csv_and_xlsx_and_import_csv(client, world, box):
    from openpyxl import load_workbook
    owner, inbox_id, agent = box
    message_id = deliver(world, inbox_id, build_mail(subject="Order"))
    sheet = client.post("/v1/files/", json={"name": "orders.xlsx", "file_type": "spreadsheet"},
                        headers=agent.auth).json
    fid = sheet["file_id"]
    body = {"source_message_id": message_id, "rows": [  # sent as written (the test client's json= sorts keys)
        {"customer": "Ada", "amount": 12.5}, {"customer": "=HYPERLINK(\"http://x\")", "note": "formula"}]}
    added = client.post(f"/v1/files/{fid}/rows/", data=json.dumps(body), content_type="application/json",
                        headers=agent.auth)
    assert added.status_code == 201, added.get_data(as_text=True)
    rows = client.get(f"/v1/files/{fid}/rows/", headers=agent.auth).json["results"]
    assert [r["data"] for r in rows] == [{"customer": "Ada", "amount": 12.5},
                                         {"customer": "=HYPERLINK(\"http://x\")", "note": "formula"}]
    assert rows[0]["source_message_id"] == message_id and rows[0]["row_id"].startswith("row_")
    exported = client.get(f"/v1/files/{fid}/rows/?format=csv", headers=agent.auth)
    assert exported.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert table == [["customer", "amount", "note"], ["Ada", "12.5", ""], ["'=HYPERLINK(\"http://x\")", "", "formula"]]
    book = client.get(f"/v1/files/{fid}/rows/?format=xlsx", headers=agent.auth)
    ws = load_workbook(io.BytesIO(book.data)).active
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    assert cells[0] == ["customer", "amount", "note"] and cells[1][:2] == ["Ada", 12.5]
    assert cells[2][0] == "'=HYPERLINK(\"http://x\")" and ws.cell(3, 1).data_type != "f"
    imported = client.post(f"/v1/files/{fid}/rows/import/", data="customer,amount\nBob,3\n",
                           content_type="text/csv", headers=agent.auth)
    assert imported.status_code == 200 and imported.json == {"imported": 1, "columns": ["customer", "amount"]}
    assert len(client.get(f"/v1/files/{fid}/rows/", headers=agent.auth).json["results"]) == 3
    plain = client.post("/v1/files/", json={"name": "a.txt", "text": "a"}, headers=agent.auth).json
    assert_error(client.post(f"/v1/files/{plain['file_id']}/rows/", json={"rows": [{"a": 1}]}, headers=agent.auth),
                 400, "validation_error")


# --- storage accounting and the files cap ---------------------------------------------------------------
def test_files_storage_counts_each_blob_once_and_an_enforced_cap_refuses_writes(client, world, store, box):
    owner, inbox_id, agent = box
    for name in ("a.bin", "b.bin"):  # the same bytes twice: counted once
        assert client.post("/v1/files/", json={"name": name, "content_base64": _b64(PDF)},
                           headers=agent.auth).status_code == 201
    used = client.get("/v1/billing/usage/", headers=owner.auth).json
    assert used["files_storage_bytes"] == len(PDF)
    cap = client.put("/v1/billing/caps/files/", json={"limit_gb": (len(PDF) + 100) / 1e9, "mode": "enforce"},
                     headers=owner.auth)
    assert cap.status_code == 200, cap.get_data(as_text=True)
    over = client.post("/v1/files/", json={"name": "c.bin", "content_base64": _b64(b"x" * 200)}, headers=agent.auth)
    assert_error(over, 403, "cap_reached")
    # Bytes the tenant already stores add nothing: still allowed; deleting never happens by itself.
    assert client.post("/v1/files/", json={"name": "d.bin", "content_base64": _b64(PDF)},
                       headers=agent.auth).status_code == 201
    assert client.post("/v1/files/", json={"name": "small.txt", "text": "tiny"}, headers=agent.auth).status_code == 201
    with store.session() as db:
        assert usage.gauge(db, owner.tenant_id, usage.FILES_BYTES) == len(PDF) + 4
        assert db.scalar(select(func.count()).select_from(Blob)) == 2
        assert db.scalar(select(func.coalesce(func.sum(UsageCounter.value), 0)).where(
            UsageCounter.metric == usage.FILE_WRITES)) == 4


# --- multipart uploads (the 200 MiB streaming test is tests/integration/test_files_upload.py) -------------
def test_a_multipart_upload_creates_a_file_and_a_new_version(client, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/files/upload/?file_type=document", headers=agent.auth, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(PDF), "../scan\u202e.pdf", "application/pdf")})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert (made.json["name"], made.json["size"], made.json["content_type"]) == (".._scan.pdf", len(PDF), "application/pdf")
    again = client.post(f"/v1/files/{made.json['file_id']}/upload/", headers=agent.auth,
                        content_type="multipart/form-data", data={"file": (io.BytesIO(b"v2"), "x.pdf")})
    assert again.status_code == 200 and again.json["version"] == 2 and again.json["name"] == ".._scan.pdf"
    no_file = client.post("/v1/files/upload/", headers=agent.auth, content_type="multipart/form-data",
                          data={"note": "no file here"})
    assert_error(no_file, 400, "validation_error", field="file")
    as_json = client.post("/v1/files/upload/", headers=agent.auth, json={"name": "x"})
    assert_error(as_json, 415, "unsupported_media_type")


def test_an_upload_past_files_max_bytes_is_413_and_keeps_nothing(make_app, make_settings, world_for):
    client = make_app(make_settings(files_max_bytes=64 * 1024)).test_client()
    world = world_for(client)
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["files:write"])
    resp = client.post("/v1/files/upload/", headers=agent.auth, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(b"x" * (64 * 1024 + 1)), "big.bin")})
    assert_error(resp, 413, "payload_too_large")
    with world.store.session() as db:
        assert db.scalar(select(func.count()).select_from(Blob)) == 0
        assert db.scalar(select(func.count()).select_from(BlobChunk)) == 0
    big_json = client.post("/v1/files/", headers=agent.auth, json={"name": "b", "content_base64": _b64(b"y" * 70_000)})
    assert_error(big_json, 413, "payload_too_large")
