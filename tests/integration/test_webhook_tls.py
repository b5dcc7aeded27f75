"""Webhooks over https: the connection goes to the address checked, and TLS is spoken to the
target's name (SNI, and the certificate verified against that name, not the address)."""
from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.dns import Resolver
from appliance.services.automation import webhooks
from tests.integration.webhook_receiver import Receiver

NAME = "hooks.tls.example"


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for name (its own CA), written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_goes_to_the_checked_address_with_the_name_as_sni_and_host(make_settings, dns_server, tmp_path) -> None:
    cert, key = self_signed(tmp_path, NAME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver = Receiver([], tls=context)
    dns_server.publish(NAME, "A", "127.0.0.1", restart=False)
    dns_server.publish("other.tls.example", "A", "127.0.0.1")
    settings = make_settings(dns_servers=dns_server.address, webhook_allow_private=True, tls_ca_file=str(cert))
    resolver = Resolver(settings)
    now = dt.datetime.now(dt.timezone.utc)
    body = b'{"type":"webhook.test"}'
    headers = webhooks.headers_for(["whsec_" + "a" * 44], "msg_1", now, body)
    try:
        result = webhooks.send(settings, resolver, f"https://{NAME}:{receiver.port}/hook", headers, body, now)
        assert result.ok, result
        assert receiver.server_names == [NAME]
        assert receiver.hits[0].headers["host"] == f"{NAME}:{receiver.port}"
        # Same address, another name: the certificate does not match it, so nothing is sent.
        other = webhooks.send(settings, resolver, f"https://other.tls.example:{receiver.port}/hook", headers, body,
                              now)
        assert not other.ok and "connection failed" in other.error and len(receiver.hits) == 1
    finally:
        receiver.stop()
