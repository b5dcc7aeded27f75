"""Issue 19 point 7: the Files page of an inbox uploads, makes folders, lists versions, creates a
signed link and deletes (CSRF on every form, errors as flash messages); "Save to files" on a
message's attachment makes a file of it; another tenant's files are 404 pages."""
from __future__ import annotations

import io
import re
from urllib.parse import urlparse

from sqlalchemy import func, select

from appliance.models import Blob, File
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import text_of


def _files(store) -> list[File]:
    with store.session() as db:
        return list(db.scalars(select(File).order_by(File.id)))


def test_upload_folder_versions_link_delete(web, world, store, client):
    owner = world.owner()
    inbox = world.inbox(owner, "docs@mine.example.com")
    web.sign_in(owner.email)
    assert "No files here yet" in text_of(web.get(f"/admin/inboxes/{inbox}/files/"))
    made = web.post(f"/admin/inboxes/{inbox}/files/folders/", {"name": "Contracts"})
    assert made.status_code == 303
    folder_id = re.search(r"folder=(fld_\w+)", text_of(web.get(f"/admin/inboxes/{inbox}/files/"))).group(1)
    dup = web.post(f"/admin/inboxes/{inbox}/files/folders/", {"name": "Contracts"})
    assert "already there" in text_of(web.get(dup.headers["Location"]))
    up = web.post(f"/admin/inboxes/{inbox}/files/upload/", {"folder_id": folder_id, "file_type": "document",
                                                             "file": (io.BytesIO(b"%PDF v1"), "deal.pdf")},
                  content_type="multipart/form-data")
    assert up.status_code == 303
    listing = text_of(web.get(up.headers["Location"]))
    assert "Uploaded “deal.pdf”" in listing and "deal.pdf" in listing
    [file] = _files(store)
    assert (file.folder_id, file.file_type, file.size) == (folder_id, "document", 7)
    client.patch(f"/v1/files/{file.id}/", json={"text": "v2"}, query_string={"inbox_id": inbox}, headers=owner.auth)
    detail = text_of(web.get(f"/admin/files/{file.id}/"))
    assert "Versions" in detail and 'data-version="2"' in detail and 'data-version="1"' in detail
    assert web.get(f"/admin/files/{file.id}/content/?version=1").data == b"%PDF v1"
    linked = web.post(f"/admin/files/{file.id}/link/", {"expires_in": "3600"})
    page = text_of(web.get(linked.headers["Location"]))
    url = re.search(r"(http://\S+/v1/files/fil_\w+/download/\?[^\s<\"]+)", page).group(1).replace("&amp;", "&")
    parsed = urlparse(url)
    public = client.get(f"{parsed.path}?{parsed.query}")  # no session, no token
    assert public.status_code == 200 and public.data == b"v2"
    asked = web.post(f"/admin/files/{file.id}/delete/", {})
    assert asked.status_code == 200 and "Its links stop working" in text_of(asked)
    assert web.post(f"/admin/files/{file.id}/delete/", {"confirm": "yes"}).status_code == 303
    assert _files(store) == []


def test_save_an_attachment_to_files(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    message_id = deliver(world, inbox, build_mail(attachments=(("scan.pdf", "application/pdf", b"%PDF scan"),)))
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/mail/{inbox}/messages/{message_id}/"))
    action = re.search(r'action="([^"]+/save/)"', page).group(1)
    saved = web.post(action, {})
    assert saved.status_code == 303 and "/admin/files/fil_" in saved.headers["Location"]
    assert "Saved “scan.pdf”" in text_of(web.get(saved.headers["Location"]))
    assert web.post(action, {}).status_code == 303  # a second file, the same blob
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Blob)) == 1
    assert [f.name for f in _files(store)] == ["scan.pdf", "scan.pdf"]


def test_forms_need_csrf_and_other_tenants_get_404(web, web_for, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    refused = web.post(f"/admin/inboxes/{inbox}/files/upload/", {"file": (io.BytesIO(b"x"), "a.txt")}, csrf=False,
                       content_type="multipart/form-data")
    assert refused.status_code == 400 and _files(store) == []
    web.post(f"/admin/inboxes/{inbox}/files/upload/", {"file": (io.BytesIO(b"x"), "a.txt")},
             content_type="multipart/form-data")
    [file] = _files(store)
    stranger = world.owner()
    other = web_for()
    other.sign_in(stranger.email)
    assert other.get(f"/admin/inboxes/{inbox}/files/").status_code == 404
    assert other.get(f"/admin/files/{file.id}/").status_code == 404
    assert other.get(f"/admin/files/{file.id}/content/").status_code == 404
    assert other.post(f"/admin/files/{file.id}/link/", {"expires_in": "3600"}).status_code == 404
    assert other.post(f"/admin/files/{file.id}/delete/", {"confirm": "yes"}).status_code == 404
    assert other.post(f"/admin/inboxes/{inbox}/files/upload/", {"file": (io.BytesIO(b"y"), "b.txt")},
                      content_type="multipart/form-data").status_code == 404
    assert [f.name for f in _files(store)] == ["a.txt"]
