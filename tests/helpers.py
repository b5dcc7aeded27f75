"""Assertions shared by the API tests."""
from __future__ import annotations

import email
import email.policy
import json
import quopri

from sqlalchemy import inspect


def assert_error(resp, status: int, code: str, field: str | None = None) -> dict:
    """The contract's one error body, with this status and code; returns the `error` object."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"].startswith("req_")
    assert body["request_id"] == resp.headers["X-Request-Id"]
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert set(err) <= {"code", "message", "field", "fix", "docs_url"}
    assert isinstance(err["fix"], str) and err["fix"], err  # every error says what to do (issue 24)
    assert err["docs_url"] == f"/docs/errors/#{code}", err
    if field is not None:
        assert err.get("field") == field, err
    return err


def _texts(value) -> list[str]:
    """A stored value as text, with e-mail bodies decoded (quoted-printable would hide a token)."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out = [raw.decode("latin-1"), quopri.decodestring(raw).decode("latin-1")]
        for part in email.message_from_bytes(raw, policy=email.policy.default).walk():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload.decode("latin-1"))
        return out
    if isinstance(value, (dict, list)):
        return [json.dumps(value)]
    return [str(value)]


def where_stored(store, needle: str) -> set[tuple[str, str]]:
    """(table, column) of every stored value, in every table of the store, that contains needle."""
    found = set()
    for engine in {store.engine, store.counters_engine}:
        tables = inspect(engine).get_table_names()
        with engine.connect() as conn:
            for table in tables:
                result = conn.exec_driver_sql(f'SELECT * FROM "{table}"')
                columns = list(result.keys())
                for row in result:
                    for column, value in zip(columns, row):
                        if any(needle in text for text in _texts(value)):
                            found.add((table, column))
    return found


def new_dkim_key() -> tuple[bytes, str]:
    """A fresh RSA-2048 DKIM key: (private key PEM, the TXT record value publishing its public half)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def alembic(store, action: str, revision: str) -> None:
    """Run an alembic command ("upgrade"/"downgrade") to revision on the store's database."""
    from alembic import command
    from alembic.config import Config

    from appliance.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)
