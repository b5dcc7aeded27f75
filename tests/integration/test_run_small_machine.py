"""`gentbox run` on a small machine (one web worker, one SMTP process, issue 26 "Whole appliance memory
idle"): two processes beside the supervisor serve every listener, MCP's process starts on the first
connection, a child that dies is restarted (one that keeps dying stops the appliance), and SIGTERM
stops them all."""
from __future__ import annotations

import imaplib
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.integration.test_smtp_cli import free_port, initialised, wait_for_line  # noqa: F401 - a fixture

PORTS = ("HTTP", "SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "MCP")


@pytest.fixture
def running(initialised: dict[str, str], tmp_path: Path):  # noqa: F811, ANN201
    """`gentbox run` with the small machine's counts; (process, ports, log)."""
    ports = {name: free_port() for name in PORTS}
    env = dict(initialised, GENTBOX_WEB_WORKERS="1", GENTBOX_SMTP_PROCESSES="1", GENTBOX_BIND="127.0.0.1",
               **{f"GENTBOX_{name}_PORT": str(port) for name, port in ports.items()})
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "run"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_line(proc, log, r"Gentbox is running\.", timeout=120)
        yield proc, ports, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def children(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def listener_of(proc: subprocess.Popen, port: int) -> psutil.Process | None:
    """The child listening on port (None while none does)."""
    for child in children(proc):
        try:
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in child.net_connections("inet")):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def until(condition, what: str, timeout: float = 90):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def mcp_answers(port: int) -> bool:
    """One MCP request: 401 without a token (the process serving it may start for it)."""
    try:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=b"{}"), timeout=90)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    return False


def http_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def smtp_answers(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as smtp:
            return smtp.ehlo()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the self-signed certificate `gentbox init` made
    return context


def test_two_processes_serve_every_listener_and_mcp_starts_on_its_first_connection(running) -> None:  # noqa: ANN001
    proc, ports, _log = running
    assert len(children(proc)) == 2  # the web worker (no gunicorn master) and the SMTP process (IMAP, worker)
    assert listener_of(proc, ports["IMAP"]).pid == listener_of(proc, ports["SMTP"]).pid
    assert http_answers(ports["HTTP"])
    assert smtp_answers(ports["SMTP"])
    with smtplib.SMTP("127.0.0.1", ports["SUBMISSION"], timeout=10) as submission:
        assert "starttls" in (submission.ehlo(), submission.esmtp_features)[1]
    with smtplib.SMTP_SSL("127.0.0.1", ports["SUBMISSIONS"], timeout=10, context=unverified()) as submissions:
        assert submissions.ehlo()[0] == 250
    imap = imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=10)
    assert "STARTTLS" in imap.capabilities
    imap.logout()
    imaps = imaplib.IMAP4_SSL("127.0.0.1", ports["IMAPS"], ssl_context=unverified(), timeout=10)
    imaps.logout()
    assert mcp_answers(ports["MCP"])
    mcp = until(lambda: listener_of(proc, ports["MCP"]) if len(children(proc)) == 3 else None, "an MCP process")
    mcp.kill()  # its process goes; the next connection starts another
    until(lambda: len(children(proc)) == 2, "the MCP process reaped")
    assert mcp_answers(ports["MCP"])
    assert len(children(proc)) == 3


def test_a_killed_child_is_restarted_and_sigterm_stops_them_all(running) -> None:  # noqa: ANN001
    proc, ports, log = running
    for name, answers in (("web", http_answers), ("smtp", smtp_answers)):
        port = ports["HTTP" if name == "web" else "SMTP"]
        killed = listener_of(proc, port)
        killed.kill()
        wait_for_line(proc, log, rf"gentbox {name} exited with -9; restarting it\.")
        until(lambda: (listener_of(proc, port) or killed).pid != killed.pid, f"a new {name} process")  # noqa: B023
        until(lambda: answers(port), f"{name} answering again")  # noqa: B023
    assert listener_of(proc, ports["IMAP"]) is not None  # IMAP came back with the SMTP process
    left = children(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    assert not [child for child in left if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports["SMTP"]), timeout=5).close()


def test_a_child_that_keeps_dying_stops_gentbox_run_with_status_1(initialised: dict[str, str],  # noqa: F811
                                                                 tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORTS}
    env = dict(initialised, GENTBOX_WEB_WORKERS="1", GENTBOX_SMTP_PROCESSES="1", GENTBOX_BIND="127.0.0.1",
               **{f"GENTBOX_{name}_PORT": str(port) for name, port in ports.items()})
    log = tmp_path / "run.log"
    with socket.socket() as taken:  # the SMTP port in use: the SMTP process cannot start, again and again
        taken.bind(("127.0.0.1", ports["SMTP"]))
        taken.listen()
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "run"], cwd=tmp_path, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            assert proc.wait(timeout=180) == 1, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert text.count("gentbox smtp exited with 1; restarting it.") == 3, text
    assert "gentbox smtp exited with 1 4 times in a minute; stopping." in text, text
