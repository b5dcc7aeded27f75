"""`gentbox doctor` against a real local appliance: `gentbox web` (gunicorn) behind a TLS front,
`gentbox smtp` (two listener processes) and `gentbox worker` as subprocesses on ports bound here,
a real DNS server (dnsmasq) publishing the domain's records and the host's PTR, a self-signed
certificate. Healthy, every check passes; then a stopped worker, a missing DNS record and an
expired certificate are each reported with their fix, and the CLI exits non-zero."""
from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance import doctor
from appliance.config import Settings
from appliance.db import Store
from appliance.services.domains import domains
from appliance.services.identity.auth import authenticate
from smtp.tls import write_self_signed

HOSTNAME = "mail.doctor.test"
PUBLIC_IPV4 = "192.0.2.10"  # a documentation address: it only appears in DNS answers
DOMAIN = "corp.test"


class TlsFront:
    """The HTTPS front (nginx in production) in miniature: TLS on a port bound here, relayed
    byte for byte to the web app."""

    def __init__(self, cert: Path, key: Path, upstream_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(10)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.sock.close()


def expired_certificate(cert_path: Path, key_path: Path, hostname: str) -> None:
    """A certificate for hostname that was valid from 400 to 10 days ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now - dt.timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def wait_for(predicate, timeout: float, what: str, logs: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log"))))


class Appliance:
    """The four processes of a real appliance on this test's store, and the doctor's view of it."""

    def __init__(self, tmp_path: Path, settings: Settings, dns_server) -> None:  # noqa: ANN001
        self.tmp = tmp_path
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.dns = dns_server
        self.procs: dict[str, subprocess.Popen] = {}
        self.cert, self.key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
        write_self_signed(self.cert, self.key, HOSTNAME)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")} | {
            "GENTBOX_DATA_DIR": str(settings.data_dir), "GENTBOX_DATABASE_URL": settings.database_url,
            "GENTBOX_SECRET_KEY": settings.secret_key, "GENTBOX_HOSTNAME": HOSTNAME,
            "GENTBOX_DNS_SERVERS": dns_server.address, "GENTBOX_DNS_TIMEOUT": "2",
            "GENTBOX_TLS_CERT_FILE": str(self.cert), "GENTBOX_TLS_KEY_FILE": str(self.key),
            "GENTBOX_PUBLIC_IPV4": PUBLIC_IPV4, "GENTBOX_HEARTBEAT_INTERVAL": "1",
            "GENTBOX_LOG_LEVEL": "INFO", "GENTBOX_WORKER_POLL_INTERVAL": "0.2",
            "GENTBOX_DOCTOR_TIMEOUT": "3", "GENTBOX_WEB_WORKERS": "2",
            "GENTBOX_SUBMISSION_PORT": "0", "GENTBOX_SUBMISSIONS_PORT": "0"}

    def _spawn(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:  # noqa: ANN003
        out = (self.logs / f"{name}.log").open("ab")
        kwargs.setdefault("env", self.env)
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], cwd=self.tmp,
                                stdout=out, stderr=subprocess.STDOUT, **kwargs)
        out.close()
        self.procs[name] = proc
        return proc

    def start(self) -> "Appliance":
        # SMTP first, on a port it picks (it prints which).
        self._spawn("smtp", ["smtp", "--bind", "127.0.0.1", "--port", "0"])
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        smtp = re.compile(r"SMTP listening on 127\.0\.0\.1:(\d+)")
        submission = re.compile(r"submission listening on 127\.0\.0\.1:(\d+) \(STARTTLS\) and 127\.0\.0\.1:(\d+)")
        wait_for(lambda: smtp.search((self.logs / "smtp.log").read_text()), 60, "SMTP did not listen", self.logs)
        self.smtp_port = int(smtp.search((self.logs / "smtp.log").read_text()).group(1))
        ports = submission.search((self.logs / "smtp.log").read_text()).groups()
        self.env |= {"GENTBOX_SUBMISSION_PORT": ports[0], "GENTBOX_SUBMISSIONS_PORT": ports[1]}
        # The web app on a socket bound here and handed over, so its port is known before it starts.
        listener = socket.create_server(("127.0.0.1", 0))
        self.http_port = listener.getsockname()[1]
        self.env |= {"GENTBOX_SMTP_PORT": str(self.smtp_port), "GENTBOX_HTTP_PORT": str(self.http_port)}
        self._spawn("web", ["web", "--bind", f"fd://{listener.fileno()}"], pass_fds=[listener.fileno()])
        listener.close()
        self.front = TlsFront(self.cert, self.key, self.http_port)
        self._spawn("worker", ["worker"])
        self._spawn("imap", ["imap", "--bind", "127.0.0.1"], env=self.env | {"GENTBOX_IMAP_PORT": "0",
                                                                              "GENTBOX_IMAPS_PORT": "0"})
        wait_for(lambda: len(pattern.findall((self.logs / "imap.log").read_text())) == 2, 60, "IMAP did not listen",
                 self.logs)
        plain, secure = pattern.findall((self.logs / "imap.log").read_text())
        self.env |= {"GENTBOX_IMAP_PORT": plain, "GENTBOX_IMAPS_PORT": secure}
        self.env |= {
            "GENTBOX_PUBLIC_URL": f"https://{HOSTNAME}:{self.front.port}",
            # Outgoing port 25 and the clock are judged against peers on loopback: the SMTP
            # listener stands in for a remote MX, the web app's Date header for a time server.
            "GENTBOX_OUTBOUND_PROBE": f"127.0.0.1:{self.smtp_port}",
            "GENTBOX_CLOCK_REFERENCE_URL": f"http://127.0.0.1:{self.http_port}/v1/openapi.json"}
        return self

    def settings(self, **overrides: str) -> Settings:
        """The settings `gentbox doctor` would load from this environment."""
        from appliance.config import load_settings
        return load_settings(self.env | {k: v for k, v in overrides.items()})

    def doctor(self, **overrides: str) -> dict[str, doctor.Check]:
        settings = self.settings(**overrides)
        store = Store(settings)
        try:
            checks = {c.name: c for c in doctor.run_checks(store, settings)}
        finally:
            store.dispose()
        # PostgreSQL only: it warns, as the shared test database is not hardened (test_audit_owner.py hardens one).
        assert (checks.pop("audit_owner", None) is None) == settings.database_url.startswith("sqlite")
        return checks

    def cli_doctor(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "appliance.cli", "doctor", *args],
                              env=self.env | overrides, cwd=self.tmp, capture_output=True, text=True,
                              timeout=120)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if hasattr(self, "front"):
            self.front.close()


def set_up_domain(world, store: Store, settings: Settings, dns_server) -> None:  # noqa: ANN001
    """An owner's domain with every record published and verified, and the host's A and PTR."""
    owner = world.owner()
    with store.session() as db:
        principal = authenticate(db, owner.access_token)
        domain = domains.add_domain(db, settings, principal, DOMAIN)
        records = domains.domain_to_dict(db, settings, domain)["dns_records"]
    dns_server.publish_domain_records(DOMAIN, records)
    dns_server.publish(HOSTNAME, "A", PUBLIC_IPV4)  # dnsmasq's host-record answers the PTR too
    with store.session() as db:
        principal = authenticate(db, owner.access_token)
        assert domains.verify_domain(db, settings, principal, DOMAIN).status == "verified"


@pytest.fixture
def appliance(tmp_path: Path, make_settings, make_store, dns_server):  # noqa: ANN001
    settings = make_settings(hostname=HOSTNAME, public_ipv4=PUBLIC_IPV4, dns_servers=dns_server.address,
                             dns_timeout=2.0)
    store = make_store(settings)
    from tests.world import World
    set_up_domain(World(store, settings), store, settings, dns_server)
    running = Appliance(tmp_path, settings, dns_server).start()
    try:
        wait_for(lambda: all(running.doctor()[f"process.{k}"].status == "pass"
                             for k in ("web", "smtp", "worker", "imap")),
                 60, "every process did not report", running.logs)
        yield running
    finally:
        running.stop()


def assert_failed_with_fix(check: doctor.Check, *needles: str) -> None:
    assert check.status == "fail", check
    assert check.fix, check
    for needle in needles:
        assert needle in check.detail + " " + check.fix, (needle, check)


def assert_metrics_add_up_the_web_processes(appliance: Appliance) -> None:
    """/metrics of the real gunicorn (two workers): each request counted once, whichever worker
    answered it and whichever answers the scrape; refused through the TLS front without a token;
    and the web log has one JSON access line per request, with its request id."""
    from prometheus_client.parser import text_string_to_metric_families

    base = f"http://127.0.0.1:{appliance.http_port}"
    request_ids = set()
    for _ in range(12):
        try:
            urllib.request.urlopen(base + "/v1/users/me/", timeout=10)
        except urllib.error.HTTPError as exc:
            with exc:
                assert exc.code == 401
                request_ids.add(exc.headers["X-Request-Id"])

    def scrape() -> dict:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    counted = ("gentbox_http_request_duration_seconds_count", (("method", "GET"), ("route", "/v1/users/me/")))
    # A worker's report is as old as its last beat (1 s interval here, 15 s by default): once each
    # has beaten since the requests, every scrape, whichever worker answers it, counts them all.
    time.sleep(3)
    wait_for(lambda: scrape().get(counted) == 12, 30, "/metrics did not count the 12 requests", appliance.logs)
    for _ in range(4):  # scrapes land on either worker: each counts every request once
        samples = scrape()
        assert samples[counted] == 12
        assert samples[("gentbox_processes", (("kind", "web"),))] == 2
        assert samples[("gentbox_processes", (("kind", "smtp"),))] == 2
        assert samples[("gentbox_processes", (("kind", "worker"),))] == 1
    context = ssl.create_default_context(cafile=str(appliance.cert))
    context.check_hostname = False
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(
            f"https://127.0.0.1:{appliance.front.port}/metrics", headers={"X-Forwarded-For": "198.51.100.4"}),
            timeout=10, context=context)
    with refused.value:
        assert refused.value.code == 403
    access = [json.loads(line) for line in (appliance.logs / "web.log").read_text().splitlines()
              if line.startswith("{") and '"gentbox.access"' in line]
    logged = {r["request_id"] for r in access if r["message"].startswith("GET /v1/users/me/ 401")}
    assert logged == request_ids


def test_healthy_appliance_passes_every_check_then_each_breakage_is_reported(appliance: Appliance) -> None:
    checks = appliance.doctor()
    expected = {"process.web", "process.smtp", "process.worker", "port.smtp", "port.web", "port.https",
                "process.imap", "port.imap", "port.imaps", "port.submission", "port.submissions",
                "outbound", f"dns.{DOMAIN}", f"reverse_dns.{PUBLIC_IPV4}", "tls_certificate", "disk",
                "database", "queue", "clock"}
    assert set(checks) == expected
    assert {n: (c.status, c.detail) for n, c in checks.items() if c.status != "pass"} == {}
    assert all(c.fix == "" for c in checks.values())
    assert "2 smtp process(es)" in checks["process.smtp"].detail  # each listener process beats
    assert f"{PUBLIC_IPV4} <-> {HOSTNAME}" in checks[f"reverse_dns.{PUBLIC_IPV4}"].detail
    assert_metrics_add_up_the_web_processes(appliance)

    # A stopped worker: its heartbeat goes stale (three missed beats of 1 s), the rest stays up.
    worker = appliance.procs["worker"]
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    wait_for(lambda: appliance.doctor()["process.worker"].status == "fail", 30, "the stopped worker was not noticed",
             appliance.logs)
    checks = appliance.doctor()
    assert_failed_with_fix(checks["process.worker"], "no worker process has reported",
                           "systemctl start gentbox-worker.service")
    assert [n for n, c in checks.items() if c.status != "pass"] == ["process.worker"]

    # IMAP stopped: both of its ports fail, with the unit to start.
    imap = appliance.procs["imap"]
    imap.terminate()
    assert imap.wait(timeout=30) == 0
    checks = appliance.doctor()
    assert_failed_with_fix(checks["port.imap"], "does not answer IMAP", "systemctl start gentbox-imap.service")
    assert_failed_with_fix(checks["port.imaps"], "does not answer IMAPS", "systemctl start gentbox-imap.service")

    # A DNS record removed at the provider: the domain's check names it and what to publish.
    appliance.dns.remove(f"_dmarc.{DOMAIN}", "TXT")
    check = appliance.doctor()[f"dns.{DOMAIN}"]
    assert_failed_with_fix(check, f"TXT _dmarc.{DOMAIN} missing", f"TXT _dmarc.{DOMAIN} = v=DMARC1;")


def test_the_cli_reports_an_expired_certificate_with_its_fix_and_exits_non_zero(appliance: Appliance) -> None:
    healthy = appliance.cli_doctor()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "PASS  tls_certificate" in healthy.stdout and "FAIL" not in healthy.stdout

    cert, key = appliance.tmp / "expired.pem", appliance.tmp / "expired.key"
    expired_certificate(cert, key, HOSTNAME)
    result = appliance.cli_doctor("--json", GENTBOX_TLS_CERT_FILE=str(cert), GENTBOX_TLS_KEY_FILE=str(key))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "fail"
    failed = {c["name"]: c for c in report["checks"] if c["status"] != "pass" and c["name"] != "audit_owner"}
    assert list(failed) == ["tls_certificate"], failed
    assert failed["tls_certificate"]["detail"].startswith("expired on ")
    assert "certbot renew" in failed["tls_certificate"]["fix"]
    assert str(cert) in failed["tls_certificate"]["fix"]

    text = appliance.cli_doctor(GENTBOX_TLS_CERT_FILE=str(cert), GENTBOX_TLS_KEY_FILE=str(key))
    assert text.returncode == 1
    assert re.search(r"^FAIL  tls_certificate +expired on .*\n +fix: Renew it", text.stdout, re.M), text.stdout


class _DateServer(http.server.BaseHTTPRequestHandler):
    skew = 0.0

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def date_time_string(self, timestamp=None) -> str:  # noqa: ANN001
        return email.utils.formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.mark.parametrize(("skew", "status"), [(0.0, "pass"), (20.0, "warn"), (-600.0, "fail")])
def test_the_clock_is_compared_with_a_reference_date_header(settings: Settings, store: Store,
                                                            skew: float, status: str) -> None:
    handler = type("Skewed", (_DateServer,), {"skew": skew})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        ctx = doctor.Context(store, settings.model_copy(update={"clock_reference_url": url}), None, dt.datetime.now(dt.timezone.utc))
        [check] = doctor.check_clock(ctx)
    finally:
        server.shutdown()
        server.server_close()
    assert check.status == status, check
    assert (check.fix == "") == (status == "pass")
    if status == "fail":
        assert "ahead of" in check.detail and "timedatectl set-ntp true" in check.fix


def test_a_certificate_close_to_expiry_warns(settings: Settings, store: Store, tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    write_self_signed(cert, key, settings.hostname)  # valid for ten years
    ctx = doctor.Context(store, settings.model_copy(update={"tls_cert_file": cert, "tls_key_file": key}), None,
                         dt.datetime.now(dt.timezone.utc))
    assert doctor.check_certificate(ctx)[0].status == "pass"
    later = ctx.now + dt.timedelta(days=3650 - 9.5)
    [check] = doctor.check_certificate(doctor.Context(ctx.store, ctx.settings, None, later))
    assert check.status == "warn" and check.detail.startswith("expires in 9.") and "certbot renew" in check.fix
    other_key = tmp_path / "other.pem"
    write_self_signed(tmp_path / "other-cert.pem", other_key, settings.hostname)
    mismatched = ctx.settings.model_copy(update={"tls_key_file": other_key})
    [check] = doctor.check_certificate(doctor.Context(ctx.store, mismatched, None, ctx.now))
    assert check.status == "fail" and "cannot be used with its key" in check.detail


def test_outbound_port_25_blocked_fails_with_the_smarthost_fix(settings: Settings, store: Store) -> None:
    # Nothing listens on the probe's port: the connection is refused, as by a provider's filter.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    probe = settings.model_copy(update={"outbound_probe": f"127.0.0.1:{port}", "doctor_timeout": 1.0})
    started = time.monotonic()
    [check] = doctor.check_outbound(doctor.Context(store, probe, None, dt.datetime.now(dt.timezone.utc)))
    assert time.monotonic() - started < 5
    assert check.status == "fail" and "GENTBOX_RELAY_HOST" in check.fix
