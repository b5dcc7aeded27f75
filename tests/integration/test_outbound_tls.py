"""Outbound TLS (issue 14, point 4): MTA-STS (RFC 8461) for recipient domains that publish it,
and no clear-text retry after a failed STARTTLS anywhere.

Real peers only: aiosmtpd MX hosts on 127.0.0.x with certificates from a test CA made here, the
policy served by a local HTTPS server (http.server + ssl, port 0, certificate from the same CA),
and the _mta-sts TXT, mta-sts.<domain> A and MX records in dnsmasq. The worker trusts the test
CA through settings.tls_ca_file and fetches policies on settings.mta_sts_https_port.
"""
from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from appliance import clock
from appliance.config import Settings
from appliance.models import MtaStsPolicy
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, out  # noqa: F401


# --- a test CA ----------------------------------------------------------------------------------
class Authority:
    """A self-signed CA that issues leaf certificates for host names, as PEM files in a folder."""

    def __init__(self, folder: Path, name: str = "Gentbox Test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                                    critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.pem = folder / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, *names: str) -> tuple[Path, Path]:
        """(certificate, key) files for names (the first is the subject), signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        stem = self.folder / names[0].replace("*", "star")
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


# --- the policy host ----------------------------------------------------------------------------
@dataclass
class Served:
    body: str
    status: int = 200
    content_type: str = "text/plain"


@dataclass
class PolicyServer:
    """https://mta-sts.<domain>/.well-known/mta-sts.txt for every domain in `policies`, on
    127.0.0.1 and a port of its own; `requests` counts fetches per host name."""

    policies: dict[str, Served] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def start(self, cert: Path, key: Path) -> "PolicyServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                owner.requests[host] = owner.requests.get(host, 0) + 1
                served = owner.policies.get(host.removeprefix("mta-sts."))
                if served is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                data = served.body.encode()
                self.send_response(served.status)
                self.send_header("Content-Type", served.content_type)
                self.send_header("Content-Length", str(len(data)))
                if 300 <= served.status < 400:
                    self.send_header("Location", "https://elsewhere.example/.well-known/mta-sts.txt")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mta-sts-https", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> str:
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (mode, "".join(f"mx: {m}\r\n" for m in mx), max_age)


# --- the world ------------------------------------------------------------------------------------
DOMAINS = ("sts-enforce.example", "sts-testing.example", "sts-none.example", "plain-tls.example")
# Published with a policy, but mta-sts.<this> is not in the HTTPS server's certificate.
UNCERTIFIED = "sts-wrong-host.example"


@dataclass
class Sts:
    out: object
    ca: Authority
    https: PolicyServer
    settings: Settings
    worker: Worker

    def publish(self, domain: str, policy: str | Served | None, *, policy_id: str = "20261206a") -> None:
        """Publish domain's _mta-sts TXT record and mta-sts host, and serve its policy."""
        dns = self.out.remote.dns
        dns.remove(f"_mta-sts.{domain}", restart=False)
        dns.publish(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={policy_id}", restart=False)
        dns.remove(f"mta-sts.{domain}", restart=False)
        dns.publish(f"mta-sts.{domain}", "A", "127.0.0.1")
        if policy is not None:
            self.https.policies[domain] = policy if isinstance(policy, Served) else Served(policy)

    def mx(self, domain: str, *receivers) -> None:
        self.out.remote.domain(domain, mx=[(10 * i, r) for i, r in enumerate(receivers, start=1)])

    def receiver(self, *, starttls: bool = True, names: tuple[str, ...] = (), ca: Authority | None = None):
        options = {"starttls": starttls}
        if starttls:
            options["tls_files"] = (ca or self.ca).issue(*names)
        return self.out.remote.add_receiver(**options)

    def send(self, to: str) -> str:
        return self.out.send(to=[{"email": to}], subject="Over TLS", text_body="Hello.")

    def run(self) -> int:
        return self.worker.run_once()

    def entry(self, message_id: str) -> dict:
        [only] = self.out.message(message_id)["delivery"]
        return only


@pytest.fixture
def sts(out, make_settings, tmp_path):  # noqa: F811
    ca = Authority(tmp_path / "ca")
    https = PolicyServer().start(*ca.issue(*(f"mta-sts.{d}" for d in DOMAINS)))
    extra = {"deliver_to_private": True} if "deliver_to_private" in Settings.model_fields else {}
    settings = delivery_settings(make_settings, out.remote, tls_ca_file=str(ca.pem),
                                 mta_sts_https_port=https.port, mta_sts_timeout=5.0, **extra)
    worker = Worker(out.store, settings)
    try:
        yield Sts(out, ca, https, settings, worker)
    finally:
        worker.close()
        https.stop()


# --- enforce --------------------------------------------------------------------------------------
def test_enforce_with_a_valid_certificate_delivers_over_verified_tls_and_caches_the_policy(sts) -> None:
    domain = "sts-enforce.example"
    receiver = sts.receiver(names=(f"mx1.{domain}",))
    sts.mx(domain, receiver)
    sts.publish(domain, policy_text("enforce", f"mx1.{domain}", "*.backup.example"))
    message_id = sts.send(f"ann@{domain}")
    assert sts.run() == 1
    [delivery] = receiver.deliveries
    assert delivery.tls and delivery.tls_version in ("TLSv1.2", "TLSv1.3")
    assert sts.entry(message_id)["status"] == "delivered"
    with sts.out.store.read_sessions() as db:
        row = db.get(MtaStsPolicy, domain)
        assert (row.policy_id, row.mode, row.mx, row.max_age) == (
            "20261206a", "enforce", [f"mx1.{domain}", "*.backup.example"], 86400)
    assert sts.https.requests == {f"mta-sts.{domain}": 1}

    # the cached policy serves while the TXT id is unchanged; a new id or max_age passing refetches
    sts.send(f"bo@{domain}")
    sts.run()
    assert sts.https.requests[f"mta-sts.{domain}"] == 1 and len(receiver.deliveries) == 2
    sts.publish(domain, policy_text("enforce", f"mx1.{domain}"), policy_id="20261207b")
    sts.send(f"cy@{domain}")
    sts.run()
    assert sts.https.requests[f"mta-sts.{domain}"] == 2 and len(receiver.deliveries) == 3
    with sts.out.store.read_sessions() as db:
        assert db.get(MtaStsPolicy, domain).mx == [f"mx1.{domain}"]
    clock.advance(dt.timedelta(seconds=86401))
    sts.send(f"di@{domain}")
    sts.run()
    assert sts.https.requests[f"mta-sts.{domain}"] == 3 and len(receiver.deliveries) == 4


def test_enforce_skips_mx_hosts_outside_the_policy_and_defers_when_none_is_left(sts) -> None:
    domain = "sts-enforce.example"
    outsider = sts.receiver(names=(f"mx1.{domain}",))
    listed = sts.receiver(names=(f"mx2.{domain}",))
    sts.mx(domain, outsider, listed)  # mx1 preferred, but only mx2 is in the policy
    sts.publish(domain, policy_text("enforce", f"mx2.{domain}"))
    sts.send(f"ann@{domain}")
    sts.run()
    assert outsider.connections == 0 and len(listed.deliveries) == 1

    sts.publish(domain, policy_text("enforce", "mx.elsewhere.example"), policy_id="20261206b")
    message_id = sts.send(f"bo@{domain}")
    sts.run()
    entry = sts.entry(message_id)
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("451 4.7.5"), entry
    assert "MTA-STS" in entry["smtp_reply"] and f"mx1.{domain}" in entry["smtp_reply"]
    assert outsider.connections == 0 and len(listed.deliveries) == 1  # no connection at all


@pytest.mark.parametrize("certificate", ["other_name", "untrusted_ca"])
def test_enforce_with_a_bad_certificate_defers_and_never_sends_in_clear(sts, tmp_path, certificate) -> None:
    domain = "sts-enforce.example"
    if certificate == "other_name":
        receiver = sts.receiver(names=("mx.somebody-else.example",))
    else:
        receiver = sts.receiver(names=(f"mx1.{domain}",), ca=Authority(tmp_path / "rogue", "Rogue CA"))
    sts.mx(domain, receiver)
    sts.publish(domain, policy_text("enforce", f"mx1.{domain}"))
    message_id = sts.send(f"ann@{domain}")
    sts.run()
    entry = sts.entry(message_id)
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("451 4.7.5"), entry
    assert "certificate" in entry["smtp_reply"] and "MTA-STS" in entry["smtp_reply"]
    assert receiver.deliveries == []
    commands = receiver.commands
    assert commands["STARTTLS"] == 1 and commands["MAIL"] == 0 and commands["DATA"] == 0
    assert receiver.connections == 1  # no second, clear-text attempt


def test_enforce_defers_an_mx_without_starttls(sts) -> None:
    domain = "sts-enforce.example"
    receiver = sts.receiver(starttls=False)
    sts.mx(domain, receiver)
    sts.publish(domain, policy_text("enforce", f"mx1.{domain}"))
    message_id = sts.send(f"ann@{domain}")
    sts.run()
    entry = sts.entry(message_id)
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("451 4.7.4"), entry
    assert "STARTTLS" in entry["smtp_reply"]
    assert receiver.deliveries == [] and receiver.commands["MAIL"] == 0


# --- testing and none ---------------------------------------------------------------------------
def test_testing_mode_delivers_despite_a_bad_certificate_and_reports_it(sts, tmp_path, caplog) -> None:
    domain = "sts-testing.example"
    receiver = sts.receiver(names=(f"mx1.{domain}",), ca=Authority(tmp_path / "rogue", "Rogue CA"))
    sts.mx(domain, receiver)
    sts.publish(domain, policy_text("testing", f"mx1.{domain}"))
    message_id = sts.send(f"ann@{domain}")
    with caplog.at_level("WARNING", logger="gentbox.delivery"):
        sts.run()
    [delivery] = receiver.deliveries
    assert delivery.tls  # still encrypted, only not verified
    entry = sts.entry(message_id)
    assert entry["status"] == "delivered" and entry["smtp_reply"].startswith("250"), entry
    assert "MTA-STS testing" in entry["smtp_reply"] and "certificate" in entry["smtp_reply"]
    assert any("MTA-STS" in r.getMessage() and domain in r.getMessage() for r in caplog.records)


def test_mode_none_and_an_unusable_policy_leave_delivery_opportunistic(sts) -> None:
    plain = sts.receiver(starttls=False)
    sts.mx("sts-none.example", plain)
    sts.publish("sts-none.example", policy_text("none"))
    sts.mx("plain-tls.example", plain)
    sts.publish("plain-tls.example", Served(policy_text("enforce", "mx.elsewhere.example"), status=301))
    first, second = sts.send("ann@sts-none.example"), sts.send("bo@plain-tls.example")
    sts.run()
    assert sts.entry(first)["status"] == "delivered" and sts.entry(second)["status"] == "delivered"
    assert len(plain.deliveries) == 2 and not any(d.tls for d in plain.deliveries)
    assert sts.https.requests == {"mta-sts.sts-none.example": 1, "mta-sts.plain-tls.example": 1}
    with sts.out.store.read_sessions() as db:  # the redirect was not followed, nor cached
        assert db.scalars(select(MtaStsPolicy.domain)).all() == ["sts-none.example"]


ENFORCE_ELSEWHERE = policy_text("enforce", "mx.elsewhere.example")


@pytest.mark.parametrize("served", ["redirect", "not_text_plain", "too_big", "certificate_for_another_host"])
def test_a_policy_that_cannot_be_fetched_safely_is_no_policy(sts, served) -> None:
    domain = UNCERTIFIED if served == "certificate_for_another_host" else "plain-tls.example"
    receiver = sts.receiver(starttls=False)
    sts.mx(domain, receiver)
    sts.publish(domain, {"redirect": Served(ENFORCE_ELSEWHERE, status=302),
                         "not_text_plain": Served(ENFORCE_ELSEWHERE, content_type="text/html"),
                         "too_big": Served(ENFORCE_ELSEWHERE + "#" * (65 * 1024)),
                         "certificate_for_another_host": Served(ENFORCE_ELSEWHERE)}[served])
    message_id = sts.send(f"ann@{domain}")
    sts.run()
    # had the policy been applied, mx1 (not in it, no STARTTLS) would have been refused
    assert sts.entry(message_id)["status"] == "delivered" and len(receiver.deliveries) == 1
    with sts.out.store.read_sessions() as db:
        assert db.scalars(select(MtaStsPolicy.domain)).all() == []


def test_a_cached_enforce_policy_stays_in_force_when_a_refetch_fails(sts) -> None:
    domain = "sts-enforce.example"
    good = sts.receiver(names=(f"mx1.{domain}",))
    sts.mx(domain, good)
    sts.publish(domain, policy_text("enforce", f"mx1.{domain}"))
    sts.send(f"ann@{domain}")
    sts.run()
    assert len(good.deliveries) == 1
    # a new id whose policy cannot be fetched, and mx1 now a host without STARTTLS
    sts.publish(domain, Served("gone", status=500), policy_id="20261206b")
    plain = sts.receiver(starttls=False)
    sts.mx(domain, plain)
    message_id = sts.send(f"bo@{domain}")
    sts.run()
    entry = sts.entry(message_id)
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("451 4.7.4"), entry
    assert plain.deliveries == [] and sts.https.requests[f"mta-sts.{domain}"] == 2


# --- opportunistic: no clear text after a failed STARTTLS ---------------------------------------
def _no_shared_cipher(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context no default client can agree with: TLS 1.2 and one SHA-1 suite only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA:@SECLEVEL=0")
    return context


def test_a_failed_starttls_handshake_defers_instead_of_retrying_in_clear(sts) -> None:
    files = sts.ca.issue("mx1.plain-tls.example")
    receiver = sts.out.remote.add_receiver(starttls=True, tls_files=files)
    receiver._starttls = _no_shared_cipher(*files)  # the receiver's STARTTLS context, read per connection
    sts.mx("plain-tls.example", receiver)  # no MTA-STS for this domain
    message_id = sts.send("ann@plain-tls.example")
    sts.run()
    entry = sts.entry(message_id)
    assert entry["status"] == "deferred" and entry["smtp_reply"].startswith("451 4.7.5"), entry
    assert "not retrying in clear text" in entry["smtp_reply"]
    assert receiver.deliveries == []
    assert receiver.commands["MAIL"] == 0 and receiver.commands["DATA"] == 0  # nothing in clear
    assert receiver.connections == 1
