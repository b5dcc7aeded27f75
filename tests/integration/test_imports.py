"""Import from another IMAP server (issue 25 point 4) with aioimaplib, against aioimaplib's own
IMAP test server (a real IMAP conversation over TCP): 1,000 messages in three folders arrive once
each, folders become labels, \\Seen becomes read, a second run adds nothing, a worker killed with
SIGKILL mid-import resumes after its lease, and the password is gone when the job ends."""
from __future__ import annotations

import asyncio
import email.message
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aioimaplib.imap_testing_server import Mail, MockImapServer
from sqlalchemy import func, select

from appliance.models import Event, Inbox, MailImport, Message
from appliance.services.mail import imports
from appliance.worker import Worker
from tests.helpers import assert_error

USER = "old@legacy.test"
FOLDERS = {"INBOX": 400, "Archive": 300, "Projects": 300}
DUPLICATES = 10  # INBOX messages also filed in Archive: one message, two places


class LegacyServer:
    """aioimaplib's test server in a thread of its own, holding 1,000 messages in three folders."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = MockImapServer(loop=self.loop)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.tcp = self.loop.run_until_complete(self.server.run_server(host="127.0.0.1", port=0))
        self.port = self.tcp.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def fill(self) -> None:
        n = 0
        for folder, count in FOLDERS.items():
            for i in range(count):
                n += 1
                mail = _mail(n, folder, i)
                mail.flags = ["\\Seen"] if n % 4 == 0 else []
                self.server.receive(mail, imap_user=USER, mailbox=folder)
        for n in range(1, DUPLICATES + 1):  # the same messages again, in Archive
            self.server.receive(_mail(n, "INBOX", n - 1), imap_user=USER, mailbox="Archive")

    def stop(self) -> None:
        def shut() -> None:
            self.tcp.close()
            for connection in self.server._connections:
                if connection.transport is not None:
                    connection.transport.close()
            self.loop.call_later(0.05, self.loop.stop)  # let the transports finish closing
        self.loop.call_soon_threadsafe(shut)
        self.thread.join(10)
        self.loop.close()


def _mail(n: int, folder: str, i: int) -> Mail:
    msg = email.message.EmailMessage()
    msg["From"] = f"Sender {n} <sender{n % 37}@partner.test>"
    msg["To"] = USER
    msg["Subject"] = f"Old mail {n} from {folder.split()[0]}"
    msg["Message-ID"] = f"<old-{n}@legacy.test>"
    msg["Date"] = "Mon, 02 Jan 2023 10:00:00 +0000"
    msg.set_content(f"Message number {n}, item {i} of its folder.\n")
    return Mail(msg)


@pytest.fixture
def legacy():
    server = LegacyServer()
    server.fill()
    yield server
    server.stop()


def _start(client, owner, inbox_id: str, port: int):  # noqa: ANN001, ANN202
    resp = client.post(f"/v1/inboxes/{inbox_id}/imports/", headers=owner.auth,
                       json={"host": "localhost", "port": port, "security": "none", "username": USER,
                             "password": "legacy-secret"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.json["status"] == "queued" and "password" not in resp.json
    return resp.json["import_id"]


def _count(store, inbox_id: str) -> int:  # noqa: ANN001
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id))


def test_an_import_brings_every_message_once_with_folders_as_labels(world, store, client, settings, legacy):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    import_id = _start(client, owner, inbox_id, legacy.port)
    worker = Worker(store, settings.model_copy(update={"import_rate": 10_000.0}))
    try:
        assert worker.run_imports() == 1
    finally:
        worker.close()
    job = client.get(f"/v1/inboxes/{inbox_id}/imports/{import_id}/", headers=owner.auth).json
    assert (job["status"], job["imported"], job["skipped"], job["error"]) == ("completed", 1000, DUPLICATES, None), str(job)
    assert job["progress"]["Archive"]["done"] == 300 + DUPLICATES
    assert _count(store, inbox_id) == 1000
    with store.session() as db:
        assert db.get(MailImport, import_id).secret_sealed is None  # the password is gone
        rows = list(db.scalars(select(Message).where(Message.inbox_id == inbox_id)))
        types = db.scalars(select(Event.type).where(Event.inbox_id == inbox_id, Event.type.like("message.%")))
        types = list(types)
    by_subject = {m.subject: m for m in rows}
    assert by_subject["Old mail 1 from INBOX"].labels == ["Archive"]  # filed twice: one copy, its label
    assert by_subject["Old mail 401 from Archive"].labels == ["Archive"]
    assert by_subject["Old mail 701 from Projects"].labels == ["Projects"]
    assert by_subject["Old mail 4 from INBOX"].is_read and not by_subject["Old mail 5 from INBOX"].is_read
    assert len({m.message_id_header for m in rows}) == 1000
    # Old mail is not news: no automatic reply, workflow or alert reacts to it.
    assert types.count("message.imported") == 1000 and "message.received" not in types

    again = _start(client, owner, inbox_id, legacy.port)  # a second run adds nothing
    worker = Worker(store, settings.model_copy(update={"import_rate": 10_000.0}))
    try:
        worker.run_imports()
    finally:
        worker.close()
    job = client.get(f"/v1/inboxes/{inbox_id}/imports/{again}/", headers=owner.auth).json
    assert (job["status"], job["imported"], job["skipped"]) == ("completed", 0, 1000 + DUPLICATES)
    assert _count(store, inbox_id) == 1000
    listed = client.get(f"/v1/inboxes/{inbox_id}/imports/", headers=owner.auth).json["results"]
    assert [j["import_id"] for j in listed] == [again, import_id]


def test_a_worker_killed_mid_import_resumes_and_adds_no_copy(world, store, client, settings, legacy,
                                                          tmp_path: Path):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    import_id = _start(client, owner, inbox_id, legacy.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env.update(GENTBOX_DATA_DIR=str(tmp_path / "var"), GENTBOX_DATABASE_URL=settings.database_url,
               GENTBOX_SECRET_KEY=settings.secret_key, GENTBOX_DELIVER_TO_PRIVATE="true",
               GENTBOX_IMPORT_RATE="250", GENTBOX_IMPORT_LEASE_SECONDS="2", GENTBOX_WORKER_POLL_INTERVAL="0.2",
               GENTBOX_DNS_SERVERS="127.0.0.1:9", GENTBOX_LOG_LEVEL="WARNING")

    def spawn(n: int) -> subprocess.Popen:
        with (tmp_path / f"worker-{n}.log").open("wb") as log:  # the child keeps its own copy of the fd
            return subprocess.Popen([sys.executable, "-m", "appliance.cli", "worker"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def imported() -> tuple[str, int]:
        with store.session() as db:
            job = db.get(MailImport, import_id)
            return job.status, job.imported

    first = spawn(1)
    deadline = time.monotonic() + 120
    while imported()[1] < 200 and time.monotonic() < deadline:
        assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    status, partial = imported()
    assert status == "running" and 200 <= partial < 1000, (status, partial)
    second = spawn(2)
    try:
        while imported()[0] == "running" and time.monotonic() < deadline + 60:
            time.sleep(0.1)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert imported() == ("completed", 1000), (tmp_path / "worker-2.log").read_text()
    assert _count(store, inbox_id) == 1000
    with store.session() as db:
        headers = db.scalars(select(Message.message_id_header).where(Message.inbox_id == inbox_id))
        assert len(set(headers)) == 1000


def test_folder_names_in_modified_utf7_become_readable_labels():
    assert imports._label("Projets-&AOk-t&AOk-") == "Projets-été" and imports._label("INBOX") is None
    assert imports._label("&ZeVnLIqe-") == "日本語"


def test_bad_requests_and_other_tenants_are_refused(world, store, client, make_settings):
    owner, other = world.owner(), world.owner()
    inbox_id, foreign = world.inbox(owner), world.inbox(other)
    base = {"host": "imap.example.com", "username": USER, "password": "pw"}
    assert_error(client.post(f"/v1/inboxes/{foreign}/imports/", json=base, headers=owner.auth), 404, "not_found")
    agent = world.agent(owner, inbox_id, ["email:read"])
    assert_error(client.post(f"/v1/inboxes/{inbox_id}/imports/", json=base, headers=agent.auth), 403,
                 "session_required")
    for bad, field in (({"host": "imap..example"}, "host"), ({"since": "2024-13-01"}, "since"),
                       ({"security": "plain"}, "security"), ({"password": ""}, "password")):
        assert_error(client.post(f"/v1/inboxes/{inbox_id}/imports/", json={**base, **bad}, headers=owner.auth),
                     400, "validation_error", field)
    made = client.post(f"/v1/inboxes/{inbox_id}/imports/", json=base, headers=owner.auth).json
    assert_error(client.get(f"/v1/inboxes/{foreign}/imports/{made['import_id']}/", headers=other.auth), 404,
                 "not_found")
    assert_error(client.get(f"/v1/inboxes/{inbox_id}/imports/{made['import_id']}/", headers=other.auth), 404,
                 "not_found")


def test_a_private_address_or_plain_imap_is_refused_in_production(world, store, client, make_settings, make_app,
                                                                  legacy):
    production = make_settings(deliver_to_private=False)
    app = make_app(production)
    prod_client = app.test_client()
    owner = world.owner()
    inbox_id = world.inbox(owner)
    body = {"host": "localhost", "port": legacy.port, "username": USER, "password": "pw"}
    assert_error(prod_client.post(f"/v1/inboxes/{inbox_id}/imports/", json={**body, "security": "none"},
                                  headers=owner.auth), 400, "validation_error", "security")
    made = prod_client.post(f"/v1/inboxes/{inbox_id}/imports/", json=body, headers=owner.auth)
    assert made.status_code == 202, made.get_data(as_text=True)
    worker = Worker(store, production)
    try:
        worker.run_imports()
    finally:
        worker.close()
    with store.session() as db:
        job = db.get(MailImport, made.json["import_id"])
        assert job.status == "failed" and "does not connect to" in job.error and job.secret_sealed is None
        assert db.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id)) == 0
        assert db.get(Inbox, inbox_id) is not None
