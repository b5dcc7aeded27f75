"""Data export (issue 23 point 4): mail arrives through a real SMTP listener, the tenant keeps a
card, an event and a task; an owner asks for the tenant's export; the worker builds it; the
signed link downloads a zip whose every .eml is byte-identical to the stored raw message, whose
vCard and iCalendar files parse (vobject, icalendar), and whose manifest digests match. The zip
waits encrypted in the store and is dropped once its link expires."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from urllib.parse import urlsplit

import icalendar
import vobject
from sqlalchemy import select

from appliance import clock
from appliance.models import Message, MessageRaw
from appliance.models.compliance import ComplianceExport
from appliance.worker import Worker
from tests.integration.smtp_fixtures import client as smtp_client, message_bytes, smtp_listener, tls_files  # noqa: F401

PHRASE = "exportable-marmalade"


def _run_worker(store, settings) -> None:
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()


def _tenant_with_data(client, world, smtp_listener):  # noqa: F811
    owner = world.owner()
    domain = f"{owner.tenant_id.lower()[-8:]}.example.com"
    sales, support = world.inbox(owner, f"sales@{domain}"), world.inbox(owner, f"support@{domain}")
    attachment = (f"From: Zoë <zoe@remote.test>\r\nTo: sales@{domain}\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
                  "Message-ID: <att.1@remote.test>\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                  f"{PHRASE}\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                  "filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b1--\r\n").encode()
    with smtp_client(smtp_listener()) as smtp:
        smtp.sendmail("zoe@remote.test", [f"sales@{domain}"], attachment)
        smtp.sendmail("alice@remote.test", [f"sales@{domain}", f"support@{domain}"],
                      message_bytes("Hello", f"sales@{domain}", sender="alice@remote.test", body="Hi there."))
    for path, body in (
            ("/v1/contacts/", {"inbox_id": support, "full_name": "Zoë Example", "emails": [{"address": "zoe@remote.test"}]}),
            ("/v1/tasks/", {"inbox_id": sales, "summary": "Answer Zoë"}),
            ("/v1/calendar/events/", {"inbox_id": sales, "title": "Planning", "start": "2030-01-01T10:00:00"})):
        answer = client.post(path, headers=owner.auth, json=body)
        assert answer.status_code == 201, (path, answer.json)
    return owner


def _download(client, url: str):
    parts = urlsplit(url)
    return client.get(parts.path, query_string=parts.query)


def test_the_export_zip_holds_every_message_byte_for_byte(client, world, store, settings,  # noqa: F811
                                                           smtp_listener):
    owner = _tenant_with_data(client, world, smtp_listener)
    requested = client.post("/v1/compliance/export/", headers=owner.auth, json={"scope": "tenant"})
    assert requested.status_code == 202, requested.json
    export_id = requested.json["export_id"]
    listed = client.get("/v1/compliance/export/", headers=owner.auth).json["results"]
    assert listed[0]["status"] == "queued" and listed[0]["download_url"] is None

    _run_worker(store, settings)
    [ready] = client.get("/v1/compliance/export/", headers=owner.auth).json["results"]
    assert ready["status"] == "ready" and ready["progress"] == 100, ready
    answer = _download(client, ready["download_url"])
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert hashlib.sha256(answer.data).hexdigest() == ready["sha256"]
    archive = zipfile.ZipFile(io.BytesIO(answer.data))

    with store.read_sessions() as db:
        raws = {m.id: (m.inbox_id, bytes(raw)) for m, raw in db.execute(
            select(Message, MessageRaw.raw).join(MessageRaw).where(Message.tenant_id == owner.tenant_id))}
        sealed = db.get(ComplianceExport, export_id).sealed
    emls = {name.rsplit("/", 1)[1][:-4]: name for name in archive.namelist() if name.endswith(".eml")}
    assert set(emls) == set(raws) and len(raws) == 3
    for message_id, name in emls.items():
        assert hashlib.sha256(archive.read(name)).digest() == hashlib.sha256(raws[message_id][1]).digest()

    cards = list(vobject.readComponents(archive.read("contacts.vcf").decode()))
    assert [c.fn.value for c in cards] == ["Zoë Example"]
    calendar = icalendar.Calendar.from_ical(archive.read("calendar.ics"))
    assert [str(e["SUMMARY"]) for e in calendar.walk("VEVENT")] == ["Planning"]
    assert [t["summary"] for t in json.loads(archive.read("tasks.json"))] == ["Answer Zoë"]
    assert any(e["action"] == "compliance.request_export" for e in json.loads(archive.read("audit.json")))
    assert {u["email"] for u in json.loads(archive.read("account.json"))["users"]} == {owner.email}

    manifest = json.loads(archive.read("manifest.json"))
    assert set(manifest["files"]) == set(archive.namelist()) - {"manifest.json"}
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == meta["sha256"], name

    assert b"PK\x03\x04" not in sealed and PHRASE.encode() not in sealed  # encrypted at rest


def test_the_link_is_signed_and_expires_with_the_bytes(client, world, store, settings, smtp_listener):  # noqa: F811
    owner = _tenant_with_data(client, world, smtp_listener)
    member = world.member(owner)
    assert client.post("/v1/compliance/export/", headers=member.auth, json={"scope": "tenant"}).status_code == 403
    mine = client.post("/v1/compliance/export/", headers=member.auth, json={})
    assert mine.status_code == 202
    client.post("/v1/compliance/export/", headers=owner.auth, json={"scope": "tenant"})
    _run_worker(store, settings)
    [own] = client.get("/v1/compliance/export/", headers=member.auth).json["results"]  # a member sees their own
    assert own["export_id"] == mine.json["export_id"]
    member_zip = zipfile.ZipFile(io.BytesIO(_download(client, own["download_url"]).data))
    assert not [n for n in member_zip.namelist() if n.endswith(".eml")]  # no inbox of theirs: no mail

    url = next(e for e in client.get("/v1/compliance/export/", headers=owner.auth).json["results"]
               if e["scope"] == "tenant")["download_url"]
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert _download(client, forged).status_code == 404
    other = client.get(urlsplit(own["download_url"]).path, query_string=urlsplit(url).query)
    assert other.status_code == 404  # a signature opens its own export only

    clock.advance(dt.timedelta(hours=24, minutes=1))
    assert _download(client, url).status_code == 404
    _run_worker(store, settings)
    with store.read_sessions() as db:
        rows = list(db.scalars(select(ComplianceExport)))
    assert {r.status for r in rows} == {"expired"} and all(r.sealed is None for r in rows)
