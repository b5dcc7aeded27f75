"""DKIM signing cost per message on one core (issue 26, point 1).

Before: what the send path did until issue 26, dkimpy 1.1's DKIM.sign with the PEM key (parsed
per message, RSA in pure Python), one rsa-sha256 signature. After: appliance.services.domains.dkim
.sign_with_keys with the key objects loaded once (OpenSSL through `cryptography`), RSA alone and
RSA + Ed25519 (what a domain with both keys published sends). Same message, same tags (x=, the
over-signed header list), relaxed/relaxed.

Usage: PYTHONPATH=. .venv/bin/python bench/dkim_sign.py [SECONDS per case, default 3]
"""
from __future__ import annotations

import sys
import time

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from appliance.services.domains import dkim
from appliance.services.mail import compose


def message(kib: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * (kib * 1024 // len(line) + 1)
    return (b"From: Agent <agent@example.test>\r\nTo: someone@example.org\r\nSubject: Benchmark\r\n"
            b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <bench@example.test>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + body[:kib * 1024])


class _Before(dkimpy.DKIM):
    """The signer as it was: dkimpy's sign() with x= added after t=."""

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, standardize=False):  # noqa: ANN001, ANN201
        at = [name for name, _ in fields].index(b"t") + 1
        expires = str(int(dict(fields)[b"t"]) + dkim.DEFAULT_EXPIRY).encode()
        return super().gen_header([*fields[:at], (b"x", expires), *fields[at:]], include_headers, canon_policy,
                                  header_name, pk, standardize)


def before(raw: bytes, pem: bytes) -> bytes:
    names = dkim.oversigned_headers(raw, compose.SIGNED)
    return _Before(raw, linesep=b"\r\n").sign(b"gent", b"example.test", pem, canonicalize=(b"relaxed", b"relaxed"),
                                               include_headers=names) + raw


def rate(sign, raw: bytes, seconds: float) -> float:
    """Messages per CPU second of this process (one core), signing raw over and over for about
    `seconds` of CPU: process time, not wall time, so other load on the machine counts less."""
    sign(raw)  # warm up
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        sign(raw)
        count += 1
    return count / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    rsa_only = [dkim.SigningKey("gent", "rsa", rsa_key)]
    both = [dkim.SigningKey("gented", "ed25519", ed25519.Ed25519PrivateKey.generate()), *rsa_only]
    cases = {
        "before: dkimpy, RSA": lambda raw: before(raw, pem),
        "after: OpenSSL, RSA": lambda raw: dkim.sign_with_keys(raw, "example.test", rsa_only, compose.SIGNED),
        "after: OpenSSL, RSA + Ed25519": lambda raw: dkim.sign_with_keys(raw, "example.test", both, compose.SIGNED),
    }
    print(f"{'case (messages per CPU second)':32} {'5 KiB':>8} {'100 KiB':>8}")
    for name, sign in cases.items():
        small, large = (rate(sign, message(kib), seconds) for kib in (5, 100))
        print(f"{name:32} {small:8.0f} {large:8.0f}")


if __name__ == "__main__":
    main()
