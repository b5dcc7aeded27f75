"""A real Postfix (Debian's package) relays mail into the listener: what it hands over is stored
byte for byte, parsed, and threaded.

Each test runs its own private Postfix instance from a fresh configuration directory (its own
main.cf, master.cf, queue and data directories), started with `postfix -c DIR start` and stopped
in a finalizer; the system's Postfix instance (if any) is never touched. Postfix listens on a free
loopback port and relays everything to `[127.0.0.1]:<listener port>`.
"""
from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from sqlalchemy import select

from appliance.models import Attachment
from appliance.services.workspace import blobs
from tests.integration.smtp_fixtures import smtp_listener, stored, tls_files  # noqa: F401

import pytest

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostfix:
    """A Postfix instance of its own under a fresh directory, relaying to relay_to."""

    def __init__(self, relay_to: tuple[str, int]) -> None:
        if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
            raise RuntimeError("postfix is not installed: run the suite with `make test` "
                               "(scripts/test-services.sh installs it)")
        # Not under pytest's tmp_path: its parents are mode 0700, and Postfix's daemons run as
        # the `postfix` user, which must reach the queue directory.
        self.root = Path(tempfile.mkdtemp(prefix="gentbox-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.queue = self.root / "spool"
        self.data = self.root / "lib"
        self.log = self.root / "maillog"
        for folder in (self.config, self.queue, self.data):
            folder.mkdir()
        shutil.chown(self.data, "postfix", "postfix")  # Postfix's own state (TLS cache, locks)
        self.port = free_port()
        settings = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config),
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "meta_directory": "/etc/postfix",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "command_directory": "/usr/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.root),
            "myhostname": "relay.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_transport": "error:no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",
            "local_header_rewrite_clients": "",
            "relayhost": f"[{relay_to[0]}]:{relay_to[1]}",
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
            "smtputf8_enable": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "biff": "no",
        }
        (self.config / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.config / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.config), *args], capture_output=True,
                              text=True, timeout=60, check=check)

    def start(self) -> tuple[str, int]:
        self.run("check")
        done = self.run("start", check=False)
        assert done.returncode == 0, (done.stdout, done.stderr, self.maillog())
        deadline = time.monotonic() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as smtp:
                    if smtp.noop()[0] == 250:
                        return "127.0.0.1", self.port
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"postfix did not listen on {self.port}:\n{self.maillog()}")
                time.sleep(0.1)

    def maillog(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.run("stop", check=False)
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        else:
            if pid_file.exists():  # still running after `postfix stop`: end its master by pid
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postfix(request: pytest.FixtureRequest):
    """Start a private Postfix relaying to the given (host, port); returns its (host, port)."""
    started: list[PrivatePostfix] = []

    def start(relay_to: tuple[str, int]) -> tuple[str, int]:
        instance = PrivatePostfix(relay_to)
        started.append(instance)
        address = instance.start()
        start.instance = instance
        return address

    yield start
    for instance in started:
        instance.stop()


def wait_for(store, count: int, postfix_start, timeout: float = 60, **where):
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(store, **where)
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            instance = getattr(postfix_start, "instance", None)
            log = instance.maillog() if instance else ""
            raise AssertionError(f"{len(rows)} of {count} messages stored after {timeout}s; "
                                 f"postfix log:\n{log}")
        time.sleep(0.2)


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def first_message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@sender.example>"
    msg["To"] = to
    msg["Subject"] = "Contract draft via Postfix"
    msg["Message-ID"] = f"<{time.time_ns()}.first@sender.example>"
    msg["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    msg.set_content("Hello agent,\n\nthe draft is attached. Grüße.\n.leading dot line\n")
    msg.add_alternative("<p>Hello agent, the <b>draft</b> is attached.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="draft.pdf")
    return msg


def test_mail_relayed_by_a_real_postfix_is_stored_intact_and_a_reply_joins_its_thread(
        world, store, smtp_listener, postfix) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@relay.example")
    listener = smtp_listener()
    relay = postfix(listener)

    sent_msg = first_message("agent@relay.example")
    sent = sent_msg.as_bytes(policy=SMTP_POLICY)
    with smtplib.SMTP(*relay, local_hostname="client.example", timeout=30) as smtp:
        refused = smtp.sendmail("alice@sender.example", ["agent@relay.example"], sent)
    assert refused == {}

    [(message, raw)] = wait_for(store, 1, postfix, inbox_id=inbox_id)
    # Our trace header, then Postfix's, then exactly what the client gave Postfix.
    assert raw.startswith(b"Received: from relay.postfix.test"), raw[:300]
    assert b"by relay.postfix.test (Postfix)" in raw
    assert raw.endswith(sent), raw[-300:]
    header_end = raw.index(b"\r\n\r\n")
    assert raw[header_end:] == sent[sent.index(b"\r\n\r\n"):]
    assert message.inbox_id == inbox_id and message.tenant_id == owner.tenant_id
    assert message.subject == "Contract draft via Postfix"
    assert message.envelope_from == "alice@sender.example"
    assert message.envelope_to == "agent@relay.example"
    assert message.client_ip == "127.0.0.1"
    assert "the draft is attached. Grüße." in message.text_body
    assert ".leading dot line" in message.text_body
    assert "<b>draft</b>" in message.html_body
    with store.read_sessions() as db:
        [attachment] = db.scalars(select(Attachment).where(Attachment.message_id == message.id)).all()
        content = blobs.attachment_bytes(db, attachment)  # issue 19: the bytes live in the blob store
    assert attachment.filename == "draft.pdf"
    assert content == PDF

    reply = EmailMessage()
    reply["From"] = "Alice <alice@sender.example>"
    reply["To"] = "agent@relay.example"
    reply["Subject"] = "Re: Contract draft via Postfix"
    reply["Message-ID"] = f"<{time.time_ns()}.second@sender.example>"
    reply["In-Reply-To"] = sent_msg["Message-ID"]
    reply["References"] = sent_msg["Message-ID"]
    reply["Date"] = "Mon, 01 Jan 2024 11:00:00 +0000"
    reply.set_content("One more thing.\n")
    with smtplib.SMTP(*relay, local_hostname="client.example", timeout=30) as smtp:
        assert smtp.sendmail("alice@sender.example", ["agent@relay.example"],
                             reply.as_bytes(policy=SMTP_POLICY)) == {}
    rows = wait_for(store, 2, postfix, inbox_id=inbox_id)
    assert len(rows) == 2
    second, second_raw = rows[1]
    assert second.subject == "Re: Contract draft via Postfix"
    assert second.in_reply_to == sent_msg["Message-ID"]
    assert second.thread_id == message.thread_id
    assert second_raw.endswith(reply.as_bytes(policy=SMTP_POLICY))
    assert "One more thing." in second.text_body


def test_postfix_gets_a_permanent_refusal_for_an_unknown_inbox_and_stores_nothing(
        world, store, smtp_listener, postfix) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@relay.example")
    relay = postfix(smtp_listener())
    msg = first_message("nobody@relay.example")
    with smtplib.SMTP(*relay, local_hostname="client.example", timeout=30) as smtp:
        assert smtp.sendmail("alice@sender.example", ["nobody@relay.example"],
                             msg.as_bytes(policy=SMTP_POLICY)) == {}
    instance = postfix.instance
    deadline = time.monotonic() + 60
    while "status=bounced" not in instance.maillog():
        assert time.monotonic() < deadline, instance.maillog()
        time.sleep(0.2)
    log = instance.maillog()
    assert "to=<nobody@relay.example>" in log and "550 5.1.1" in log, log
    assert stored(store) == []
