"""Two appliance nodes on one PostgreSQL (issue 26.4, docs/scaling.md): each runs `gentbox smtp`,
`gentbox web`, `gentbox worker` and `gentbox imap` as real processes, with a data dir and a TLS pair
of its own; they share only the database and the secret key.

    from tests.integration.two_nodes import two_nodes  # noqa: F401 (with remote_world)
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from smtp.tls import write_self_signed

HOSTNAME = "mail.nodes.test"


def wait_for(predicate, timeout: float, what: str, logs: Path):  # noqa: ANN001, ANN201
    """Poll predicate until it returns something truthy (returned), failing with the nodes' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log"))))


class Node:
    """One node: its four processes, their ports, and its logs (in logs/<name>-<process>.log)."""

    def __init__(self, name: str, root: Path, logs: Path, env: dict[str, str]) -> None:
        self.name, self.logs = name, logs
        self.data_dir = root / name
        self.data_dir.mkdir()
        cert, key = self.data_dir / "cert.pem", self.data_dir / "key.pem"
        write_self_signed(cert, key, HOSTNAME)
        self.env = env | {"GENTBOX_DATA_DIR": str(self.data_dir), "GENTBOX_TLS_CERT_FILE": str(cert),
                          "GENTBOX_TLS_KEY_FILE": str(key)}
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, process: str) -> Path:
        return self.logs / f"{self.name}-{process}.log"

    def spawn(self, process: str, args: list[str], **kwargs) -> subprocess.Popen:  # noqa: ANN003
        with self.log(process).open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], cwd=self.data_dir,
                                    env=kwargs.pop("env", self.env), stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self.procs[process] = proc
        return proc

    def start(self) -> "Node":
        self.spawn("smtp", ["smtp", "--bind", "127.0.0.1", "--port", "0"])
        listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.http_port = listener.getsockname()[1]
        self.spawn("web", ["web", "--bind", f"fd://{listener.fileno()}"], pass_fds=[listener.fileno()],
                   env=self.env | {"GENTBOX_HTTP_PORT": str(self.http_port)})
        listener.close()
        self.spawn("worker", ["worker"])
        self.spawn("imap", ["imap", "--bind", "127.0.0.1"])
        return self

    def wait_ready(self) -> None:
        smtp = re.compile(r"SMTP listening on 127\.0\.0\.1:(\d+)")
        found = wait_for(lambda: smtp.search(self.log("smtp").read_text()), 90, f"{self.name}: SMTP", self.logs)
        self.smtp_port = int(found.group(1))
        imap = re.compile(r"IMAP listening on 127\.0\.0\.1:(\d+)")
        found = wait_for(lambda: len(imap.findall(self.log("imap").read_text())) == 2 and
                         imap.findall(self.log("imap").read_text()), 90, f"{self.name}: IMAP", self.logs)
        self.imap_port = int(found[0])
        wait_for(self._serving, 90, f"{self.name}: web", self.logs)
        wait_for(lambda: "Gentbox worker delivering" in self.log("worker").read_text(), 90,
                 f"{self.name}: worker", self.logs)
        for process, proc in self.procs.items():
            assert proc.poll() is None, f"{self.name} {process} exited: {self.log(process).read_text()[-3000:]}"

    def _serving(self) -> bool:
        try:
            return httpx.get(f"{self.base}/v1/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self, process: str) -> None:
        """SIGKILL: no cleanup of any kind, as a power cut or the OOM killer would."""
        proc = self.procs[process]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> list[str]:
        """SIGTERM to every process, SIGKILL to those still running 30 s later (named in the result)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline, killed = time.monotonic() + 30, []
        for process, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(process)
                proc.kill()
                proc.wait(timeout=10)
        if killed:
            print(f"node {self.name}: {', '.join(killed)} did not stop within 30 s of SIGTERM")
        return killed


def node_env(settings, remote_world, **extra: str) -> dict[str, str]:  # noqa: ANN001
    """The environment every node of one appliance shares (the store, the key, the remote world's
    DNS and MX port, limits lifted), plus extra GENTBOX_* settings; bench/two_nodes.py uses it too."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")} | {
        "GENTBOX_DATABASE_URL": settings.database_url, "GENTBOX_SECRET_KEY": settings.secret_key,
        "GENTBOX_HOSTNAME": HOSTNAME, "GENTBOX_LOG_LEVEL": "WARNING",
        "GENTBOX_DNS_SERVERS": remote_world.dns_address, "GENTBOX_DNS_TIMEOUT": "1",
        "GENTBOX_DELIVERY_PORT": str(remote_world.port), "GENTBOX_DELIVERY_TIMEOUT": "10",
        "GENTBOX_DELIVER_TO_PRIVATE": "true", "GENTBOX_WEBHOOK_ALLOW_PRIVATE": "true",
        "GENTBOX_WORKER_POLL_INTERVAL": "0.1", "GENTBOX_QUEUE_LEASE": "10",
        "GENTBOX_RATE_LIMIT_TOKEN": "1000000", "GENTBOX_RATE_LIMIT_IP": "1000000",
        "GENTBOX_SMTP_CONNECTION_RATE_PER_IP": "100000", "GENTBOX_SMTP_MAX_CONNECTIONS_PER_IP": "1000",
        "GENTBOX_SMTP_PROCESSES": "1", "GENTBOX_WEB_WORKERS": "2",
        "GENTBOX_SUBMISSION_PORT": "0", "GENTBOX_SUBMISSIONS_PORT": "0",
        "GENTBOX_IMAP_PORT": "0", "GENTBOX_IMAPS_PORT": "0", "GENTBOX_MCP_PORT": "0"} | extra


def start_nodes(names: tuple[str, ...], root: Path, logs: Path, env: dict[str, str],
                started: list[Node]) -> tuple[Node, ...]:
    """Start the named nodes (appended to started at once, so a caller can stop them whatever
    happens) and return them once every process of each serves."""
    nodes = tuple(Node(name, root, logs, env).start() for name in names)
    started.extend(nodes)
    for node in nodes:
        node.wait_ready()
    return nodes


@pytest.fixture
def two_nodes(settings, remote_world, tmp_path: Path):  # noqa: ANN001
    """Start nodes a and b on the test's PostgreSQL store (the test's secret key): a factory taking
    extra GENTBOX_* settings for both; returns (a, b) once every process of both serves."""
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[Node] = []

    def start(**extra: str) -> tuple[Node, Node]:
        return start_nodes(("a", "b"), tmp_path, logs, node_env(settings, remote_world, **extra), started)

    yield start
    for node in started:
        node.stop()
