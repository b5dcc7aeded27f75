"""The outbound DKIM signature's shape (issue 14, point 3): over-signing, x= and its setting."""
from __future__ import annotations

import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.config import Settings, load_settings
from appliance.errors import ConfigError
from appliance.services.domains.dkim import oversigned_headers, sign_message
from appliance.services.mail import compose

RAW = (b"From: a@example.test\r\nTo: b@example.org\r\nTo: c@example.org\r\nSubject: Hi\r\n"
       b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nHello.\r\n")


def test_each_name_is_listed_once_more_than_the_message_has_it() -> None:
    assert oversigned_headers(RAW, ("From", "To", "Cc", "Subject")) == [
        b"from", b"from", b"to", b"to", b"to", b"cc", b"subject", b"subject"]


def test_x_is_the_expiry_after_t_and_covered_by_the_signature() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + __import__("base64").b64encode(public)
    signed = sign_message(RAW, "sel", "example.test", pem, compose.SIGNED, expiry=36 * 3600)
    header = signed.split(b"\r\n\r\n")[0].decode()
    t, x = (int(re.search(rf"\b{tag}=(\d+)", header).group(1)) for tag in ("t", "x"))
    assert x - t == 36 * 3600
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    # x= is inside b=: changing it breaks the signature
    assert not dkim.verify(signed.replace(f"x={x}".encode(), f"x={x + 86400}".encode()),
                           dnsfunc=lambda name, timeout=5: record)


@pytest.mark.parametrize("value, seconds", [("7d", 7 * 86400), ("1w", 7 * 86400), ("180h", 180 * 3600),
                                            ("700000", 700000), (604800, 604800)])
def test_dkim_expiry_takes_seconds_or_a_duration(value, seconds) -> None:
    assert Settings(dkim_expiry=value).dkim_expiry == seconds


@pytest.mark.parametrize("value", ["soon", "3d", "0", "-5d"])
def test_a_bad_or_too_short_dkim_expiry_stops_the_start(value) -> None:
    with pytest.raises(ConfigError, match="GENTBOX_DKIM_EXPIRY"):
        load_settings({"GENTBOX_DKIM_EXPIRY": value, "GENTBOX_CONFIG": "/nonexistent"}, require_secret=False)
