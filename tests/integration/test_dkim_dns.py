"""Per-domain DKIM keys against real DNS (dnsmasq on loopback).

dkimpy signs a message with the key the appliance generated and verifies the signature by
looking the record up through appliance.dns.Resolver: the record is the one the builder
produced, published into the test DNS server the way an owner would.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets

import dkim
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, text

from appliance import clock
from appliance.config import Settings
from appliance.dns import Resolver
from appliance.models import DkimKey, Domain, Event
from appliance.services.domains import dkim as dkim_keys

MESSAGE = (b"From: Agent <agent@example.test>\r\n"
           b"To: Someone <someone@example.org>\r\n"
           b"Subject: Hello from the appliance\r\n"
           b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
           b"Message-ID: <1@example.test>\r\n"
           b"\r\n"
           b"Hello.\r\n")
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


@pytest.fixture
def settings_for_dns(make_settings, dns_server) -> Settings:
    return make_settings(dns_servers=dns_server.address, dns_timeout=2.0)


@pytest.fixture
def dns_client(make_app, settings_for_dns):
    return make_app(settings_for_dns).test_client()


def dnsfunc_for(settings: Settings):
    """dkimpy's TXT lookup, answered by the appliance's resolver (and so by the test DNS server)."""
    resolver = Resolver(settings)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        answer = resolver.query(name.decode("ascii"), "TXT")
        return answer.records[0].encode() if answer.records else None
    return dnsfunc


def signing_key(world, domain_id: str) -> tuple[str, bytes]:
    with world.store.session() as db:
        key = dkim_keys.signing_key(db, world.settings, domain_id)
    assert key is not None
    return key


def sign(world, domain_id: str, domain: str = "example.test") -> tuple[str, bytes]:
    """(selector, signed message) with the domain's current signing key."""
    selector, pem = signing_key(world, domain_id)
    header = dkim.sign(MESSAGE, selector.encode(), domain.encode(), pem, include_headers=SIGNED_HEADERS)
    return selector, header + MESSAGE


def dkim_hosts(domain_object: dict) -> list[str]:
    """The RSA keys' hosts (Ed25519's, issue 26, are tested in test_dkim_ed25519.py)."""
    return [r["host"] for r in domain_object["dns_records"] if r["purpose"] == "dkim" and "k=rsa" in r["value"]]


def dkim_record(domain_object: dict, selector: str) -> dict:
    [only] = [r for r in domain_object["dns_records"] if r["host"] == f"{selector}._domainkey"]
    return only


def verified_domain(client, dns_server, person, name: str = "example.test") -> dict:
    created = client.post("/v1/domains/", json={"domain": name}, headers=person.auth)
    assert created.status_code == 201, created.json
    dns_server.publish_domain_records(name, created.json["dns_records"])
    answer = client.post(f"/v1/domains/{name}/verify/", headers=person.auth)
    assert answer.status_code == 200 and answer.json["status"] == "verified", answer.json
    return answer.json


def test_the_domain_key_signs_and_verifies_against_the_published_record(dns_client, dns_server, world_for,
                                                                        settings_for_dns):
    world = world_for(dns_client)
    owner = world.owner()
    dnsfunc = dnsfunc_for(settings_for_dns)
    created = dns_client.post("/v1/domains/", json={"domain": "example.test"}, headers=owner.auth).json

    selector, signed = sign(world, created["domain_id"])
    assert selector == "gent"
    signature = signed.split(b"\r\n\r\n", 1)[0]
    assert b"d=example.test" in signature and b"s=gent" in signature and b"a=rsa-sha256" in signature
    assert not dkim.verify(signed, dnsfunc=dnsfunc)  # nothing published yet

    dns_server.publish_domain_records("example.test", created["dns_records"])
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"Hello.", b"Hullo."), dnsfunc=dnsfunc)  # tampered body
    assert not dkim.verify(signed.replace(b"Subject: Hello", b"Subject: Jello"), dnsfunc=dnsfunc)

    # the key is RSA 2048 and its public half is exactly what the record publishes
    _, pem = signing_key(world, created["domain_id"])
    private = serialization.load_pem_private_key(pem, password=None)
    assert private.key_size == 2048
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert dkim_record(created, "gent")["value"] == f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def test_each_domain_has_its_own_key(dns_client, dns_server, world_for, settings_for_dns):
    world = world_for(dns_client)
    owner = world.owner()
    first = verified_domain(dns_client, dns_server, owner, "one.test")
    second = verified_domain(dns_client, dns_server, owner, "two.test")
    assert dkim_record(first, "gent")["value"] != dkim_record(second, "gent")["value"]
    dnsfunc = dnsfunc_for(settings_for_dns)
    _, signed = sign(world, first["domain_id"], "one.test")
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    # one domain's key does not verify as another's
    selector, pem = signing_key(world, first["domain_id"])
    header = dkim.sign(MESSAGE, selector.encode(), b"two.test", pem, include_headers=SIGNED_HEADERS)
    assert not dkim.verify(header + MESSAGE, dnsfunc=dnsfunc)


def test_the_private_key_is_not_stored_in_the_clear(dns_client, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = dns_client.post("/v1/domains/", json={"domain": "example.test"}, headers=owner.auth)
    assert created.status_code == 201
    assert "PRIVATE" not in created.get_data(as_text=True)
    domain_id = created.json["domain_id"]
    _, pem = signing_key(world, domain_id)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    body = b"".join(pem.strip().splitlines()[1:-1])
    der = serialization.load_pem_private_key(pem, password=None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    # every column of the row, as the database itself returns it
    with world.store.session() as db:
        [row] = db.execute(text("SELECT * FROM dkim_keys WHERE domain_id = :d AND algorithm = 'rsa'"), {"d": domain_id}).mappings().all()
        key = db.scalar(select(DkimKey).where(DkimKey.domain_id == domain_id))
        key_id, blob = key.id, bytes(key.private_key_enc)
    for column, value in row.items():
        raw = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
        for secret in (pem, body, body[:64], der, der[-64:]):
            assert secret not in raw, column
    assert b"PRIVATE KEY" not in blob

    # only the appliance's secret opens it
    assert dkim_keys.decrypt_private_key(world.settings, blob, key_id) == pem
    stranger = Settings(secret_key=secrets.token_urlsafe(48))
    with pytest.raises(InvalidTag):
        dkim_keys.decrypt_private_key(stranger, blob, key_id)
    # and no copy in the clear in the data directory either
    for path in world.settings.data_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            assert body[:64] not in data, path


def test_rotation_publishes_and_verifies_the_new_selector_before_signing_switches(dns_client, dns_server,
                                                                                  world_for, settings_for_dns):
    world = world_for(dns_client)
    owner = world.owner()
    dnsfunc = dnsfunc_for(settings_for_dns)
    domain = verified_domain(dns_client, dns_server, owner)
    domain_id = domain["domain_id"]
    assert dkim_hosts(domain) == ["gent._domainkey"]

    rotated = dns_client.post("/v1/domains/example.test/dkim/rotate/", headers=owner.auth)
    assert rotated.status_code == 200, rotated.json
    assert dkim_hosts(rotated.json) == ["gent._domainkey", "gent2._domainkey"]
    assert dkim_record(rotated.json, "gent2")["value"] != dkim_record(rotated.json, "gent")["value"]
    # only the signing key's record is required; the pending one is listed but optional
    assert [dkim_record(rotated.json, s)["required"] for s in ("gent", "gent2")] == [True, False]
    assert rotated.json["status"] == "verified"
    selector, signed_before = sign(world, domain_id)
    assert selector == "gent"  # the old key signs until the new one shows up in DNS
    assert dkim.verify(signed_before, dnsfunc=dnsfunc)

    again = dns_client.post("/v1/domains/example.test/dkim/rotate/", headers=owner.auth)
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert "gent2._domainkey" in again.json["error"]["fix"]
    with world.store.session() as db:
        assert db.scalar(select(func.count()).select_from(DkimKey).where(DkimKey.domain_id == domain_id,
                                                                       DkimKey.algorithm == "rsa")) == 2

    # verify before the new record is published: nothing switches, the domain stays verified
    answer = dns_client.post("/v1/domains/example.test/verify/", headers=owner.auth).json
    assert answer["status"] == "verified"
    assert dkim_record(answer, "gent")["status"] == "ok" and dkim_record(answer, "gent2")["status"] == "missing"
    assert signing_key(world, domain_id)[0] == "gent"

    # publish gent2, verify: signing switches; gent stays listed while it retires
    dns_server.publish_domain_records("example.test", [dkim_record(rotated.json, "gent2")])
    answer = dns_client.post("/v1/domains/example.test/verify/", headers=owner.auth).json
    assert answer["status"] == "verified" and answer["needs_attention"] is False
    assert dkim_hosts(answer) == ["gent._domainkey", "gent2._domainkey"]
    assert {dkim_record(answer, s)["status"] for s in ("gent", "gent2")} == {"ok"}
    assert [dkim_record(answer, s)["required"] for s in ("gent", "gent2")] == [False, True]
    selector, signed_after = sign(world, domain_id)
    assert selector == "gent2"
    assert dkim.verify(signed_after, dnsfunc=dnsfunc)
    assert dkim.verify(signed_before, dnsfunc=dnsfunc)  # mail signed just before the switch still checks
    with world.store.session() as db:
        rotated_events = db.scalars(select(Event.payload).where(Event.type == "domain.dkim_rotated",
                                                                Event.resource_id == domain_id)).all()
        assert rotated_events == [{"selector": "gent2", "algorithm": "rsa"}]
        assert db.scalar(select(Domain.status).where(Domain.id == domain_id)) == "verified"

    # six days on, gent is still listed; eight days on, it is gone (sessions expire: log in again)
    clock.advance(dt.timedelta(days=6))
    owner = world.login(owner.email)
    assert dkim_hosts(dns_client.get("/v1/domains/example.test/", headers=owner.auth).json) == \
        ["gent._domainkey", "gent2._domainkey"]
    clock.advance(dt.timedelta(days=2))
    owner = world.login(owner.email)
    got = dns_client.get("/v1/domains/example.test/", headers=owner.auth).json
    assert dkim_hosts(got) == ["gent2._domainkey"]
    assert signing_key(world, domain_id)[0] == "gent2"
    answer = dns_client.post("/v1/domains/example.test/verify/", headers=owner.auth).json
    assert dkim_hosts(answer) == ["gent2._domainkey"] and answer["status"] == "verified"
    assert answer["needs_attention"] is False

    # a next rotation takes the next selector
    third = dns_client.post("/v1/domains/example.test/dkim/rotate/", headers=owner.auth)
    assert third.status_code == 200 and dkim_hosts(third.json) == ["gent2._domainkey", "gent3._domainkey"]
