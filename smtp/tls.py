"""STARTTLS: the listener's server context, and the self-signed pair `gentbox init` makes.

A self-signed certificate is enough for inbound MX traffic: sending MTAs use opportunistic TLS
and do not verify the certificate (MTA-STS or DANE, which do, need a certificate from a CA).
"""
from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path

from appliance.config import Settings
from appliance.errors import ConfigError

CERT_DAYS = 3650


def write_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Write a new RSA key (mode 0600) and a self-signed certificate for hostname."""
    from cryptography import x509  # `gentbox init` only: the listener never loads x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context from the settings' certificate and key, or None when none is set."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"GENTBOX_TLS_CERT_FILE/GENTBOX_TLS_KEY_FILE: cannot load "
                          f"{settings.tls_cert_file} with {settings.tls_key_file}: {exc}") from None
    return context
