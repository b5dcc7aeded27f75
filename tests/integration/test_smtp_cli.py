"""`gentbox init` makes the STARTTLS certificate; `gentbox smtp` and `gentbox run` serve SMTP."""
from __future__ import annotations

import imaplib
import re
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from appliance.config import load_settings
from tests.integration.smtp_fixtures import RawClient, message_bytes, stored
from tests.integration.test_cli import base_env, gentbox


def wait_for_line(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared: {log.read_text()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def initialised(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path / "var", database_url=database_url)
    result = gentbox("init", "--hostname", "mx.example.org", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return env


def test_init_makes_a_self_signed_certificate_and_gentbox_smtp_serves_starttls_with_it(
        initialised: dict[str, str], tmp_path: Path, world) -> None:
    settings = load_settings(initialised)
    cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
    assert cert_file == (tmp_path / "var" / "tls" / "cert.pem").resolve()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=mx.example.org"
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["mx.example.org"]

    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    log = tmp_path / "smtp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "smtp", "--port", "0"], cwd=tmp_path,
                                env=initialised, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = int(wait_for_line(proc, log, r"Gentbox SMTP listening on 127\.0\.0\.1:(\d+)").group(1))
        submission = wait_for_line(proc, log, r"Gentbox submission listening on 127\.0\.0\.1:(\d+) \(STARTTLS\) "
                                              r"and 127\.0\.0\.1:(\d+) \(TLS\)")
        with smtplib.SMTP("127.0.0.1", int(submission.group(1)), local_hostname="laptop.example", timeout=30) as smtp:
            smtp.ehlo()
            assert "auth" not in smtp.esmtp_features  # no password before TLS
            smtp.starttls(context=_unverified())
            smtp.ehlo()
            assert "PLAIN" in smtp.esmtp_features["auth"]
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as smtp:
            code, banner = smtp.ehlo()
            assert code == 250 and banner.startswith(b"mx.example.org")
            context = ssl.create_default_context(cafile=str(cert_file))  # verifies against the init cert
            context.check_hostname = False
            smtp.starttls(context=context)
            assert smtp.sock.getpeercert()["subject"] == ((("commonName", "mx.example.org"),),)
            smtp.ehlo()
            sent = message_bytes("Via the CLI", "agent@hosted.example")
            assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], sent) == {}
        with RawClient(("127.0.0.1", port)) as idle:
            assert idle.reply()[0] == 220
            proc.send_signal(signal.SIGTERM)  # a connected client is told before the listener goes
            code, text = idle.reply()
            assert (code, text[:9]) == (421, "421 4.3.2"), text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    [(message, raw)] = stored(world.store)
    assert raw.endswith(sent) and b"by mx.example.org (Gentbox) with ESMTPS" in raw


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def test_gentbox_smtp_says_so_when_the_port_is_taken(initialised: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gentbox("smtp", "--port", str(port), cwd=tmp_path, env=initialised)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"gentbox: cannot listen for SMTP on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr


def test_a_bad_certificate_setting_stops_gentbox_smtp_with_a_clear_message(
        initialised: dict[str, str], tmp_path: Path) -> None:
    env = dict(initialised, GENTBOX_TLS_CERT_FILE=str(tmp_path / "missing.pem"))
    result = gentbox("smtp", "--port", "0", cwd=tmp_path, env=env)
    assert result.returncode == 2 and "GENTBOX_TLS_CERT_FILE" in result.stderr, result.stderr
    env = {k: v for k, v in initialised.items()}
    env["GENTBOX_TLS_KEY_FILE"] = ""
    result = gentbox("smtp", "--port", "0", cwd=tmp_path, env=env)
    assert result.returncode == 2 and "tls_cert_file and tls_key_file go together" in result.stderr


def mcp_refuses_without_a_token(url: str, deadline: float) -> bool:
    """Poll until the MCP process answers (it starts slowest: the SDK and the app to import)."""
    import urllib.error
    import urllib.request
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            time.sleep(0.2)
    return False


def test_gentbox_run_starts_the_smtp_listener_beside_the_web_app(initialised: dict[str, str],
                                                                 tmp_path: Path) -> None:
    http_port, smtp_port, imap_port, imaps_port, mcp_port = (free_port() for _ in range(5))
    env = dict(initialised, GENTBOX_HTTP_PORT=str(http_port), GENTBOX_SMTP_PORT=str(smtp_port),
               GENTBOX_IMAP_PORT=str(imap_port), GENTBOX_IMAPS_PORT=str(imaps_port), GENTBOX_WEB_WORKERS="1",
               GENTBOX_MCP_PORT=str(mcp_port))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "run"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_line(proc, log, r"Gentbox is running\.")
        assert f"  SMTP:     127.0.0.1:{smtp_port} (inbound mail for your inboxes; STARTTLS)" in log.read_text()
        assert f"  MCP:      http://127.0.0.1:{mcp_port}/mcp" in log.read_text()  # issue 24: MCP beside them
        assert mcp_refuses_without_a_token(f"http://127.0.0.1:{mcp_port}/mcp", deadline=time.monotonic() + 90)
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.example", timeout=30) as smtp:
            smtp.ehlo()
            assert "starttls" in smtp.esmtp_features
        # and IMAP beside them (issue 25): both ports printed, STARTTLS offered on the first
        assert f"  IMAP:     127.0.0.1:{imap_port} (STARTTLS" in log.read_text()
        assert f"  IMAP:     127.0.0.1:{imaps_port} (TLS)" in log.read_text()
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=30)
        assert "STARTTLS" in imap.capabilities
        imap.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
