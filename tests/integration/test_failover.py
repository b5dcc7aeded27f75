"""Issue 26.5, the failover drill: a PostgreSQL primary with a synchronous streaming replica on this
machine (Debian's pg_createcluster, in a temporary directory, dropped at the end). The appliance
(`gentbox web` and `gentbox smtp` as real processes) takes API sends and SMTP mail while the primary
crashes and the replica is promoted; it reconnects by itself through its multi-host database URL
(target_session_attrs=read-write), and no message answered 201 or 250 before the crash is missing
after it (docs/scaling.md: synchronous replication is what makes that true)."""
from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
from email.message import EmailMessage
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import select

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.models import Inbox, Message
from tests.conftest import _fast_settings
from tests.integration.two_nodes import wait_for
from tests.world import World

VERSION = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1] if os.path.isdir("/usr/lib/postgresql") else "15"
REPLICA_NAME = "gentbox_replica"  # the replica's application_name: synchronous_standby_names names it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


class Cluster:
    """One Debian PostgreSQL cluster with its data dir, socket and log in `root`."""

    def __init__(self, name: str, root: Path, *, settings: dict[str, str]) -> None:
        self.name, self.port, self.data = name, free_port(), root / name
        run("pg_createcluster", VERSION, name, "-d", str(self.data), "-p", str(self.port), "-s", str(root),
            "-l", str(root / f"{name}.log"), "--start-conf=manual", "--", "--auth-local=trust", "--auth-host=trust")
        settings = {"listen_addresses": "127.0.0.1"} | settings
        conf = Path(f"/etc/postgresql/{VERSION}/{name}/conf.d/gentbox-drill.conf")
        conf.write_text("".join(f"{key} = '{value}'\n" for key, value in settings.items()))

    def ctl(self, *args: str) -> None:
        run("pg_ctlcluster", VERSION, self.name, *args)

    def query(self, sql: str):  # noqa: ANN201
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True,
                             connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, self.name], capture_output=True, timeout=120)
        shutil.rmtree(f"/etc/postgresql/{VERSION}/{self.name}", ignore_errors=True)  # our conf.d file kept it


@pytest.fixture
def primary_and_replica():
    """(primary, replica): the replica streams from the primary and confirms every commit
    (synchronous_standby_names on the primary names it)."""
    assert os.geteuid() == 0, "the failover drill creates PostgreSQL clusters with pg_createcluster: run it as root"
    root = Path(tempfile.mkdtemp(prefix="gentbox-failover-"))
    shutil.chown(root, "postgres", "postgres")
    tag = f"gbdrill{os.getpid()}"
    clusters: list[Cluster] = []
    try:
        primary = Cluster(f"{tag}p", root, settings={"synchronous_standby_names": REPLICA_NAME})
        clusters.append(primary)
        primary.ctl("start")
        replica = Cluster(f"{tag}r", root, settings={})
        clusters.append(replica)
        shutil.rmtree(replica.data)  # its data is a base backup of the primary's, streamed on
        run("runuser", "-u", "postgres", "--", "pg_basebackup", "-D", str(replica.data), "-R", "-X", "stream",
            "-c", "fast", "-d", f"host=127.0.0.1 port={primary.port} user=postgres application_name={REPLICA_NAME}")
        replica.ctl("start")
        wait_for(lambda: primary.query("SELECT sync_state FROM pg_stat_replication") == [("sync",)], 60,
                 "the replica never became the synchronous standby", root)
        primary.query("CREATE DATABASE gentbox")
        yield primary, replica
    finally:
        for cluster in clusters:
            cluster.drop()
        shutil.rmtree(root, ignore_errors=True)


class Load:
    """API sends and SMTP messages in threads until stopped; what was acknowledged, in order."""

    def __init__(self, base: str, agent, smtp_port: int, address: str) -> None:  # noqa: ANN001
        self.base, self.agent, self.smtp_port, self.address = base, agent, smtp_port, address
        self.sent: list[str] = []  # subjects answered 201
        self.received: list[str] = []  # Message-IDs answered 250
        self.failures = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._api, args=(k,), daemon=True) for k in range(2)]
        self.threads += [threading.Thread(target=self._smtp, args=(k,), daemon=True) for k in range(2)]
        for thread in self.threads:
            thread.start()

    def _api(self, k: int) -> None:
        with httpx.Client(base_url=self.base, headers=self.agent.auth, timeout=30) as client:
            for n in range(10**6):
                if self.stopping.is_set():
                    return
                subject = f"Drill {k}-{n}"
                try:
                    resp = client.post("/v1/messages/", json={"to": [{"email": "ann@partner.example"}], "subject": subject,
                                                              "text_body": "During the drill."})
                except httpx.HTTPError:
                    resp = None
                if resp is not None and resp.status_code == 201:
                    self.sent.append(subject)
                else:  # 503 while no primary is reachable: the client tries again, as a real one would
                    self.failures += 1
                    self.stopping.wait(0.2)

    def _smtp(self, k: int) -> None:
        n = 0
        while not self.stopping.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.sender.example",
                                  timeout=30) as smtp:
                    while not self.stopping.is_set():
                        n += 1
                        msg = EmailMessage()
                        msg["From"], msg["To"], msg["Subject"] = "bo@sender.example", self.address, f"In {k}-{n}"
                        msg["Message-ID"] = f"<drill-{k}-{n}@sender.example>"
                        msg.set_content("During the drill.")
                        smtp.send_message(msg)  # returns only on 250
                        self.received.append(f"drill-{k}-{n}@sender.example")
            except (smtplib.SMTPException, OSError):
                self.failures += 1  # 451 while no primary is reachable: a new session tries again
                self.stopping.wait(0.2)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)


def spawn(args: list[str], env: dict[str, str], log: Path, **kwargs) -> subprocess.Popen:  # noqa: ANN003
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], env=env, cwd=log.parent,
                                stdout=out, stderr=subprocess.STDOUT, **kwargs)


def test_the_appliance_survives_a_promoted_replica_without_losing_acknowledged_mail(
        primary_and_replica, tmp_path: Path) -> None:
    primary, replica = primary_and_replica
    # libpq's multi-host URL: the first server that takes writes; after the failover, the replica.
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/gentbox"
           "?target_session_attrs=read-write&connect_timeout=5")
    settings = Settings(**_fast_settings(data_dir=tmp_path, database_url=url))
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner()
    agent = world.sender(owner)
    inbox_id = world.inbox(owner)
    with store.session() as db:
        address = db.get(Inbox, inbox_id).address
    store.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")} | {
        "GENTBOX_DATA_DIR": str(tmp_path), "GENTBOX_DATABASE_URL": url, "GENTBOX_SECRET_KEY": settings.secret_key,
        "GENTBOX_HOSTNAME": settings.hostname, "GENTBOX_LOG_LEVEL": "WARNING", "GENTBOX_DNS_SERVERS": "127.0.0.1:9",
        "GENTBOX_DNS_TIMEOUT": "0.5", "GENTBOX_RATE_LIMIT_TOKEN": "1000000", "GENTBOX_RATE_LIMIT_IP": "1000000",
        "GENTBOX_WEB_WORKERS": "1", "GENTBOX_SMTP_PROCESSES": "1", "GENTBOX_SUBMISSION_PORT": "0",
        "GENTBOX_SUBMISSIONS_PORT": "0", "GENTBOX_SMTP_CONNECTION_RATE_PER_IP": "100000"}
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    http_port = listener.getsockname()[1]
    procs = [spawn(["web", "--bind", f"fd://{listener.fileno()}"], env | {"GENTBOX_HTTP_PORT": str(http_port)},
                   tmp_path / "web.log", pass_fds=[listener.fileno()]),
             spawn(["smtp", "--bind", "127.0.0.1", "--port", "0"], env, tmp_path / "smtp.log")]
    listener.close()
    load = None
    try:
        found = wait_for(lambda: re.search(r"SMTP listening on 127\.0\.0\.1:(\d+)", (tmp_path / "smtp.log").read_text()),
                         90, "SMTP did not listen", tmp_path)
        base = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: _answers(base), 90, "the web app did not answer", tmp_path)
        load = Load(base, agent, int(found.group(1)), address)
        wait_for(lambda: len(load.sent) >= 30 and len(load.received) >= 30, 120, "no load", tmp_path)

        primary.ctl("stop", "-m", "immediate")  # the primary crashes under load
        sent_before, received_before = list(load.sent), list(load.received)
        replica.ctl("promote")
        # The appliance finds the new primary by itself: acknowledgements resume on both paths.
        wait_for(lambda: len(load.sent) >= len(sent_before) + 20 and len(load.received) >= len(received_before) + 20,
                 120, "the appliance did not reconnect", tmp_path)
        load.stop()
        for proc in procs:
            assert proc.poll() is None, "a process died during the failover"
    finally:
        if load is not None:
            load.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)

    after = Store(settings)  # the promoted replica is the only server left that takes writes
    try:
        with after.read_sessions() as db:
            subjects = set(db.scalars(select(Message.subject).where(Message.direction == "outbound")))
            ids = {h.strip("<>") for h in db.scalars(select(Message.message_id_header).where(
                Message.direction == "inbound", Message.inbox_id == inbox_id))}
    finally:
        after.dispose()
    print(f"\nbefore the crash: {len(sent_before)} sends, {len(received_before)} received; in all "
          f"{len(load.sent)} and {len(load.received)}; {load.failures} refused while no primary answered")
    assert set(sent_before) <= subjects, sorted(set(sent_before) - subjects)[:5]
    assert set(received_before) <= ids, sorted(set(received_before) - ids)[:5]
    assert set(load.sent) <= subjects and set(load.received) <= ids  # and nothing acknowledged after it either


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
