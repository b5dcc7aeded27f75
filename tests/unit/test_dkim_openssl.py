"""The OpenSSL-backed DKIM signer (issue 26, point 1): dkimpy's canonicalisation and header
selection kept, so the RSA signature is byte for byte dkimpy's own; each domain key is unsealed
and parsed once per process, not per message; Ed25519 verifies with dkimpy (RFC 8463)."""
from __future__ import annotations

import base64
from unittest import mock

import dkim
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from appliance.services.domains import dkim as dkim_keys
from appliance.services.mail import compose

RAW = (b"From: A <a@example.test>\r\nTo: b@example.org\r\nSubject: Hi\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
       b"Message-ID: <1@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
       b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe,  two  spaces \t\r\n\r\n\r\n")
NOW = 1_700_000_000
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _pem(key) -> bytes:  # noqa: ANN001
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _DkimpyWithExpiry(dkim.DKIM):
    """dkimpy's own signer with the x= tag the appliance adds (what sign_message did before)."""

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, standardize=False):  # noqa: ANN001, ANN201
        at = [name for name, _ in fields].index(b"t") + 1
        expires = str(int(dict(fields)[b"t"]) + 3600).encode()
        return super().gen_header([*fields[:at], (b"x", expires), *fields[at:]], include_headers, canon_policy,
                                  header_name, pk, standardize)


def _records() -> dict[bytes, bytes]:
    rsa_p = RSA_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ed_p = ED_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {b"rs._domainkey.example.test.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_p),
            b"ed._domainkey.example.test.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_p)}


def test_the_rsa_signature_is_byte_for_byte_what_dkimpy_makes() -> None:
    names = dkim_keys.oversigned_headers(RAW, compose.SIGNED)
    with mock.patch("time.time", return_value=NOW):
        theirs = _DkimpyWithExpiry(RAW, linesep=b"\r\n").sign(
            b"rs", b"example.test", _pem(RSA_KEY), canonicalize=(b"relaxed", b"relaxed"), include_headers=names)
    ours = dkim_keys.sign_with_keys(RAW, "example.test", [dkim_keys.SigningKey("rs", "rsa", RSA_KEY)],
                                    compose.SIGNED, expiry=3600, now=NOW)
    assert ours == theirs + RAW


def test_ed25519_and_rsa_signatures_each_verify_with_dkimpy_and_rsa_is_on_top() -> None:
    keys = [dkim_keys.SigningKey("ed", "ed25519", ED_KEY), dkim_keys.SigningKey("rs", "rsa", RSA_KEY)]
    signed = dkim_keys.sign_with_keys(RAW, "example.test", keys, compose.SIGNED)
    records = _records()
    dnsfunc = lambda name, timeout=5: records.get(name)  # noqa: E731
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert b"a=ed25519-sha256; c=relaxed/relaxed; d=example.test" in signed
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc) and dkim.DKIM(signed).verify(idx=1, dnsfunc=dnsfunc)
    # the Ed25519 key cannot stand in for the RSA one: swapping the records fails both
    swapped = {b"rs._domainkey.example.test.": records[b"ed._domainkey.example.test."],
               b"ed._domainkey.example.test.": records[b"rs._domainkey.example.test."]}
    for index in (0, 1):
        try:
            assert not dkim.DKIM(signed).verify(idx=index, dnsfunc=lambda name, timeout=5: swapped.get(name))
        except (dkim.DKIMException, ValueError):  # dkimpy raises on a key of the wrong kind (pynacl's ValueError)
            pass


def test_each_key_is_unsealed_and_parsed_once_per_process(world, store, settings) -> None:
    owner = world.owner()
    world.sender(owner, "once@keys.test")  # a verified domain: RSA and Ed25519 keys active
    with store.session() as db:
        from appliance.models import Domain  # noqa: PLC0415
        domain_id = db.query(Domain).filter_by(name="keys.test").one().id
        with mock.patch.object(dkim_keys, "decrypt_private_key", wraps=dkim_keys.decrypt_private_key) as unseal:
            first = dkim_keys.signing_keys(db, settings, domain_id)
            for _ in range(5):
                again = dkim_keys.signing_keys(db, settings, domain_id)
    assert sorted(k.algorithm for k in first) == ["ed25519", "rsa"]
    assert unseal.call_count == 2  # once per key, however many messages follow
    assert [k.private for k in again] == [k.private for k in first]


def test_a_wrong_secret_does_not_sign_from_the_cache(world, store, settings) -> None:
    owner = world.owner()
    world.sender(owner, "secret@keys.test")
    with store.session() as db:
        from appliance.models import Domain  # noqa: PLC0415
        domain_id = db.query(Domain).filter_by(name="keys.test").one().id
        dkim_keys.signing_keys(db, settings, domain_id)
        with pytest.raises(InvalidTag):
            dkim_keys.signing_keys(db, settings.model_copy(update={"secret_key": "another-secret-" * 4}), domain_id)
