"""Issue 23 leftover (issue 19's files): the data export zip holds the subject's files under
files/<address>/<file id>/<version>/<name>, each version's bytes read from the blob store
(a promoted attachment's too), with files.json describing them; another tenant's files stay out."""
from __future__ import annotations

import base64
import io
import json
import zipfile
from urllib.parse import urlsplit

from appliance.worker import Worker
from tests.api.test_messages import build_mail, deliver

PDF = b"%PDF-1.4 exported " + bytes(range(256)) * 8


def _post_file(client, agent, body: dict) -> dict:
    made = client.post("/v1/files/", json=body, headers=agent.auth)
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.json


def test_the_export_zip_holds_every_version_of_the_tenants_files(client, world, store, settings) -> None:
    owner = world.owner()
    sales, support = world.inbox(owner), world.inbox(owner)
    agent = world.agent(owner, sales, ["email:read", "files:read", "files:write"])
    other = world.agent(owner, support, ["files:read", "files:write"])
    message_id = deliver(world, sales, build_mail(subject="Invoice", attachments=(("invoice.pdf", "application/pdf", PDF),)))
    attachment_id = client.get(f"/v1/messages/{message_id}/", headers=agent.auth).json["attachments"][0]["attachment_id"]
    promoted = _post_file(client, agent, {"source_message_id": message_id, "attachment_id": attachment_id})
    notes = _post_file(client, other, {"name": "notes.txt", "text": "first"})
    assert client.patch(f"/v1/files/{notes['file_id']}/", json={"text": "second"}, headers=other.auth).status_code == 200
    stranger = world.owner()
    stranger_agent = world.agent(stranger, world.inbox(stranger), ["files:write"])
    _post_file(client, stranger_agent, {"name": "secret.bin", "content_base64": base64.b64encode(b"theirs").decode()})

    requested = client.post("/v1/compliance/export/", headers=owner.auth, json={"scope": "tenant"})
    assert requested.status_code == 202, requested.json
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    [ready] = client.get("/v1/compliance/export/", headers=owner.auth).json["results"]
    parts = urlsplit(ready["download_url"])
    archive = zipfile.ZipFile(io.BytesIO(client.get(parts.path, query_string=parts.query).data))
    addresses = {i["id"]: i["address"] for i in json.loads(archive.read("account.json"))["inboxes"]}
    stored = {name: archive.read(name) for name in archive.namelist() if name.startswith("files/")}
    assert stored == {
        f"files/{addresses[sales]}/{promoted['file_id']}/1/invoice.pdf": PDF,
        f"files/{addresses[support]}/{notes['file_id']}/1/notes.txt": b"first",
        f"files/{addresses[support]}/{notes['file_id']}/2/notes.txt": b"second"}
    listed = {f["file_id"]: f for f in json.loads(archive.read("files.json"))}
    assert set(listed) == {promoted["file_id"], notes["file_id"]}
    assert listed[promoted["file_id"]]["versions"][0]["source_attachment_id"] == attachment_id
    assert [v["version"] for v in listed[notes["file_id"]]["versions"]] == [1, 2]
    assert "files.json" in json.loads(archive.read("manifest.json"))["files"]
