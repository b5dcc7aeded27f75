"""Contract section 2 through the API, against a real DNS server (dnsmasq on loopback).

Every test runs on SQLite and on PostgreSQL. Records are published into dnsmasq the way an owner
would at their DNS provider; nothing about DNS is mocked.
"""
from __future__ import annotations

import base64
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, inspect, select

from appliance.models import DkimKey, Domain, Event
from tests.helpers import assert_error

REQUIRED = ("mx", "spf", "dkim", "dmarc", "verification")
OPTIONAL = ("mta_sts", "tls_rpt")


# --- helpers -------------------------------------------------------------------------------
def add_domain(client, person, domain: str = "example.test", **extra) -> dict:
    resp = client.post("/v1/domains/", json={"domain": domain, **extra}, headers=person.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def verify(client, person, domain: str = "example.test") -> dict:
    resp = client.post(f"/v1/domains/{domain}/verify/", headers=person.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def check(client, person, domain: str = "example.test") -> dict:
    resp = client.get(f"/v1/domains/{domain}/check/", headers=person.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def statuses(records: list[dict]) -> dict[str, str]:
    return {r["purpose"]: r["status"] for r in records if not is_ed25519(r)}


def record(records: list[dict], purpose: str) -> dict:
    [only] = [r for r in records if r["purpose"] == purpose and not is_ed25519(r)]
    return only


def is_ed25519(record: dict) -> bool:
    """The optional Ed25519 DKIM record (issue 26: tests/integration/test_dkim_ed25519.py); "dkim"
    here means the RSA one."""
    return "k=ed25519" in record["value"]


def count(world, model, *where) -> int:
    with world.store.session() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where))


def domain_row(world, name: str) -> dict:
    with world.store.session() as db:
        domain = db.scalar(select(Domain).where(Domain.name == name))
        return {attr.key: getattr(domain, attr.key) for attr in inspect(Domain).mapper.column_attrs}


def verified_events(world, domain_id: str) -> int:
    return count(world, Event, Event.type == "domain.verified", Event.resource_id == domain_id)


def other_public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture
def dns_client(make_app, make_settings, dns_server):
    return make_app(make_settings(dns_servers=dns_server.address, dns_timeout=2.0)).test_client()


@pytest.fixture
def silent_dns():
    """A UDP "DNS server" that reads every query and never answers: the slow case."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()
    queries: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                queries.append(sock.recvfrom(4096)[0])
            except TimeoutError:
                continue
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}", queries
    stop.set()
    thread.join()
    sock.close()


# --- bad input -----------------------------------------------------------------------------
LONG_NAME = ".".join(["a" * 49] * 6) + ".test"  # 49*6 + 5 + 5 = 304 > 300: trimmed below
NAME_300 = LONG_NAME[len(LONG_NAME) - 300:].lstrip(".")


BAD_NAMES = [
    ("exa mple.test", "space"),
    ("my_domain.test", "underscore"),
    ("_dmarc.example.test", "underscore"),
    ("x" * 300, "253"),
    (NAME_300, "253"),
    ("a" * 64 + ".test", "63"),
    ("co.uk", "public suffix"),
    ("com", "two labels"),
    ("1.2.3.4", "IP address"),
    ("[::1]", "IP address"),
    ("::1", "IP address"),
    ("-bad.example.test", "hyphen"),
    ("example..test", "empty"),
    ("", "required"),
    ("   ", "required"),
]


def test_bad_domain_names_are_refused_naming_the_problem_and_nothing_is_stored(client, world):
    owner = world.owner()  # one owner for every case: signing up costs two argon2 hashes
    assert len(NAME_300) == 300
    for name, problem in BAD_NAMES:
        resp = client.post("/v1/domains/", json={"domain": name}, headers=owner.auth)
        err = assert_error(resp, 400, "validation_error", field="domain")
        assert problem.lower() in err["message"].lower(), (name, err)
        assert err.get("fix"), (name, err)
    assert count(world, Domain) == 0
    assert count(world, DkimKey) == 0


def test_uppercase_and_a_trailing_dot_are_normalized(client, world):
    owner = world.owner()
    created = add_domain(client, owner, "Example.TEST.")
    assert created["domain"] == "example.test"
    assert created["status"] == "pending"
    for spelling in ("example.test", "EXAMPLE.test.", "Example.Test"):
        got = client.get(f"/v1/domains/{spelling}/", headers=owner.auth)
        assert got.status_code == 200 and got.json["domain_id"] == created["domain_id"]
    assert_error(client.post("/v1/domains/", json={"domain": "example.test"}, headers=owner.auth),
                 409, "conflict", field="domain")
    assert count(world, Domain) == 1


def test_a_domain_verified_by_another_tenant_conflicts(client, world):
    alice, bob = world.owner(), world.owner()
    world.inbox(alice, "agent@example.test")  # alice's verified domain (a pending claim blocks no one)
    assert_error(client.post("/v1/domains/", json={"domain": "EXAMPLE.test."}, headers=bob.auth), 409,
                 "domain_taken")
    assert count(world, Domain) == 1
    assert client.get("/v1/domains/", headers=bob.auth).json == {"results": [], "cursor": None}


def test_another_tenants_domain_is_not_found(client, world):
    alice, bob = world.owner(), world.owner()
    add_domain(client, alice, "example.test")
    for method, path in [("get", "/v1/domains/example.test/"), ("post", "/v1/domains/example.test/verify/"),
                         ("get", "/v1/domains/example.test/check/"),
                         ("post", "/v1/domains/example.test/dkim/rotate/"), ("delete", "/v1/domains/example.test/"),
                         ("get", "/v1/domains/nothing-here.test/")]:
        assert_error(getattr(client, method)(path, headers=bob.auth), 404, "not_found")
    assert count(world, Domain) == 1
    assert count(world, DkimKey, DkimKey.algorithm == "rsa") == 1  # bob's rotate did nothing


def test_members_may_not_add_domains(client, world):
    owner = world.owner()
    member = world.member(owner)
    assert_error(client.post("/v1/domains/", json={"domain": "example.test"}, headers=member.auth), 403, "forbidden")
    admin = world.member(owner, role="admin")
    add_domain(client, admin, "example.test")


def test_dmarc_policy_defaults_by_domain_use_and_can_be_overridden(client, world):
    owner = world.owner()
    existing = add_domain(client, owner, "existing.test")
    assert existing["domain_use"] == "existing_domain" and existing["dmarc_policy"] == "quarantine"
    assert record(existing["dns_records"], "dmarc")["value"].startswith("v=DMARC1; p=quarantine;")
    assert record(existing["dns_records"], "spf")["value"] == "v=spf1 a:mail.gentbox.test ~all"

    dedicated = add_domain(client, owner, "mail.dedicated.test", domain_use="dedicated_subdomain")
    assert dedicated["dmarc_policy"] == "reject"
    assert record(dedicated["dns_records"], "dmarc")["value"].startswith("v=DMARC1; p=reject;")
    assert record(dedicated["dns_records"], "spf")["value"] == "v=spf1 a:mail.gentbox.test -all"

    relaxed = add_domain(client, owner, "relaxed.test", domain_use="dedicated_subdomain", dmarc_policy="none")
    assert relaxed["dmarc_policy"] == "none"
    assert record(relaxed["dns_records"], "dmarc")["value"].startswith("v=DMARC1; p=none;")

    assert_error(client.post("/v1/domains/", json={"domain": "bad.test", "dmarc_policy": "strict"},
                             headers=owner.auth), 400, "validation_error")
    assert_error(client.post("/v1/domains/", json={"domain": "bad.test", "domain_use": "other"},
                             headers=owner.auth), 400, "validation_error")
    assert count(world, Domain) == 3


def test_a_new_domain_lists_five_required_and_two_optional_records_unchecked(client, world):
    owner = world.owner()
    created = add_domain(client, owner)
    records = created["dns_records"]
    assert [r["purpose"] for r in records if r["required"]] == list(REQUIRED)
    assert [r["purpose"] for r in records if not r["required"] and not is_ed25519(r)] == list(OPTIONAL)
    assert record(records, "dkim")["host"] == "gent._domainkey"
    assert record(records, "mx")["value"] == "10 mail.gentbox.test."
    assert all(r["status"] == "unknown" and r["found"] is None for r in records)
    assert created["checked_at"] is None and created["verified_at"] is None
    assert created["needs_attention"] is False
    listed = client.get("/v1/domains/", headers=owner.auth).json
    assert [d["domain_id"] for d in listed["results"]] == [created["domain_id"]]


# --- verification against real DNS ---------------------------------------------------------
def test_nothing_published_leaves_the_domain_pending_with_every_record_missing(dns_client, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    answer = verify(dns_client, owner)
    assert answer["status"] == "pending" and answer["verified_at"] is None
    assert len(answer["dns_records"]) == 8  # with the Ed25519 key's
    assert all(r["status"] == "missing" and r["found"] == [] for r in answer["dns_records"]), answer
    assert answer["checked_at"] is not None and answer["needs_attention"] is True
    assert verified_events(world, created["domain_id"]) == 0
    # the last check is what GET shows
    got = dns_client.get("/v1/domains/example.test/", headers=owner.auth).json
    assert statuses(got["dns_records"]) == statuses(answer["dns_records"])


def test_a_wrong_dkim_key_is_a_mismatch_showing_what_dns_returned(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"], skip=("dkim",))
    wrong = f"v=DKIM1; k=rsa; p={other_public_key()}"
    dns_server.publish("gent._domainkey.example.test", "TXT", wrong)
    answer = verify(dns_client, owner)
    assert answer["status"] == "pending"
    dkim = record(answer["dns_records"], "dkim")
    assert dkim["status"] == "mismatch"
    assert dkim["found"] == [wrong]
    assert dkim["value"] != wrong
    assert {p: s for p, s in statuses(answer["dns_records"]).items() if p != "dkim"} == \
        {p: "ok" for p in REQUIRED + OPTIONAL if p != "dkim"}
    assert verified_events(world, created["domain_id"]) == 0


def test_all_records_published_verifies_the_domain_with_one_event(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"])
    answer = verify(dns_client, owner)
    assert answer["status"] == "verified", answer
    assert answer["verified_at"] is not None and answer["needs_attention"] is False
    assert set(statuses(answer["dns_records"]).values()) == {"ok"}
    mx = record(answer["dns_records"], "mx")
    assert mx["found"] == ["10 mail.gentbox.test"]
    assert verified_events(world, created["domain_id"]) == 1
    with world.store.session() as db:
        event = db.scalar(select(Event).where(Event.type == "domain.verified"))
        assert (event.tenant_id, event.actor_id, event.payload) == \
            (owner.tenant_id, owner.user_id, {"domain": "example.test"})

    again = verify(dns_client, owner)
    assert again["status"] == "verified" and again["verified_at"] == answer["verified_at"]
    assert verified_events(world, created["domain_id"]) == 1


def test_the_optional_records_do_not_hold_verification_back(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"], skip=OPTIONAL)
    answer = verify(dns_client, owner)
    assert answer["status"] == "verified"
    assert {p: statuses(answer["dns_records"])[p] for p in OPTIONAL} == {"mta_sts": "missing", "tls_rpt": "missing"}
    assert answer["needs_attention"] is False


def test_a_record_removed_later_shows_in_check_and_a_later_verify_records_it(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"])
    first = verify(dns_client, owner)
    assert first["status"] == "verified"

    dns_server.remove("gent._domainkey.example.test", "TXT")
    before = domain_row(world, "example.test")
    checked = check(dns_client, owner)
    assert checked["domain"] == "example.test" and checked["checked_at"]
    assert record(checked["records"], "dkim")["status"] == "missing"
    assert record(checked["records"], "dkim")["found"] == []
    assert {s for p, s in statuses(checked["records"]).items() if p != "dkim"} == {"ok"}
    assert domain_row(world, "example.test") == before  # check changes nothing
    got = dns_client.get("/v1/domains/example.test/", headers=owner.auth).json
    assert record(got["dns_records"], "dkim")["status"] == "ok" and got["needs_attention"] is False

    later = verify(dns_client, owner)
    assert later["status"] == "verified"  # history stays
    assert later["verified_at"] == first["verified_at"]
    assert later["needs_attention"] is True
    assert record(later["dns_records"], "dkim")["status"] == "missing"
    after = domain_row(world, "example.test")
    assert after["verified_at"] == before["verified_at"]
    assert after["dns_results"]["dkim:gent._domainkey"]["status"] == "missing"
    assert verified_events(world, created["domain_id"]) == 1

    dns_server.publish_domain_records("example.test", [record(created["dns_records"], "dkim")])
    repaired = verify(dns_client, owner)
    assert repaired["needs_attention"] is False and repaired["verified_at"] == first["verified_at"]
    assert verified_events(world, created["domain_id"]) == 1


def test_the_ownership_record_may_be_removed_after_verification(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"])
    assert verify(dns_client, owner)["status"] == "verified"
    dns_server.remove("_gent-verify.example.test", "TXT")
    later = verify(dns_client, owner)
    assert later["status"] == "verified"
    assert record(later["dns_records"], "verification")["status"] == "missing"
    assert later["needs_attention"] is False  # docs/dns.md: "It may be removed after verification."


# --- DNS down or slow ----------------------------------------------------------------------
def test_a_stopped_dns_server_gives_unknown_records_within_the_lifetime(make_app, make_settings, dns_server,
                                                                       world_for):
    client = make_app(make_settings(dns_servers=dns_server.address, dns_timeout=1.0)).test_client()
    world = world_for(client)
    owner = world.owner()
    created = add_domain(client, owner)
    dns_server.publish_domain_records("example.test", created["dns_records"])
    first = verify(client, owner)
    assert first["status"] == "verified"

    dns_server.stop()
    started = time.monotonic()
    answer = client.post("/v1/domains/example.test/verify/", headers=owner.auth)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert elapsed < 3.0, elapsed
    assert set(statuses(answer.json["dns_records"]).values()) == {"unknown"}
    assert all(r["found"] is None and r["detail"] for r in answer.json["dns_records"])
    assert answer.json["status"] == "verified" and answer.json["verified_at"] == first["verified_at"]

    started = time.monotonic()
    checked = client.get("/v1/domains/example.test/check/", headers=owner.auth)
    assert checked.status_code == 200 and time.monotonic() - started < 3.0
    assert set(statuses(checked.json["records"]).values()) == {"unknown"}


def test_a_silent_dns_server_gives_unknown_records_within_the_lifetime(make_app, make_settings, silent_dns,
                                                                      world_for):
    address, queries = silent_dns
    client = make_app(make_settings(dns_servers=address, dns_timeout=1.0)).test_client()
    world = world_for(client)
    owner = world.owner()
    created = add_domain(client, owner)

    for method, path, key in [("post", "/v1/domains/example.test/verify/", "dns_records"),
                              ("get", "/v1/domains/example.test/check/", "records")]:
        started = time.monotonic()
        resp = getattr(client, method)(path, headers=owner.auth)
        elapsed = time.monotonic() - started
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert elapsed < 3.0, (path, elapsed)
        records = resp.json[key]
        assert set(statuses(records).values()) == {"unknown"}
        assert all(r["found"] is None and "did not answer" in r["detail"] for r in records)
    assert queries, "the resolver never asked the configured server"
    got = client.get("/v1/domains/example.test/", headers=owner.auth).json
    assert got["status"] == "pending" and got["verified_at"] is None
    assert verified_events(world, created["domain_id"]) == 0


# --- real-world record shapes --------------------------------------------------------------
def test_spf_is_merged_with_an_existing_record(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    existing = "v=spf1 include:_spf.example.test ~all"
    dns_server.publish("example.test", "TXT", existing)
    created = add_domain(dns_client, owner)

    first = verify(dns_client, owner)
    spf = record(first["dns_records"], "spf")
    assert spf["value"] == "v=spf1 include:_spf.example.test a:mail.gentbox.test ~all"
    assert spf["status"] == "mismatch" and spf["found"] == [existing]
    # the domain object shows the merged value too, from the last check
    got = dns_client.get("/v1/domains/example.test/", headers=owner.auth).json
    assert record(got["dns_records"], "spf")["value"] == spf["value"]

    # the owner replaces their SPF record with the merged one and publishes the rest
    dns_server.remove("example.test", "TXT", restart=False)
    dns_server.publish_domain_records("example.test", first["dns_records"])
    answer = verify(dns_client, owner)
    assert answer["status"] == "verified", answer
    spf = record(answer["dns_records"], "spf")
    assert spf["status"] == "ok" and spf["found"] == [spf["value"]]
    assert "include:_spf.example.test" in spf["value"] and spf["value"].endswith(" ~all")
    assert verified_events(world, created["domain_id"]) == 1


def test_a_second_spf_record_is_a_mismatch(dns_client, dns_server, world_for):
    owner = world_for(dns_client).owner()
    created = add_domain(dns_client, owner)
    dns_server.publish("example.test", "TXT", "v=spf1 mx -all", restart=False)
    dns_server.publish_domain_records("example.test", created["dns_records"])
    answer = verify(dns_client, owner)
    assert answer["status"] == "pending"
    spf = record(answer["dns_records"], "spf")
    assert spf["status"] == "mismatch" and len(spf["found"]) == 2


def test_spf_over_ten_lookups_carries_a_warning(dns_client, dns_server, world_for):
    owner = world_for(dns_client).owner()
    includes = " ".join(f"include:_spf{i}.example.test" for i in range(10))
    dns_server.publish("example.test", "TXT", f"v=spf1 {includes} -all")
    add_domain(dns_client, owner)
    spf = record(verify(dns_client, owner)["dns_records"], "spf")
    assert spf["value"].endswith("a:mail.gentbox.test -all")
    assert spf["warnings"] and "11 DNS lookups" in spf["warnings"][0]


def test_a_dkim_value_split_over_several_strings_is_ok(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner)
    value = record(created["dns_records"], "dkim")["value"]
    key = value.split("p=", 1)[1]
    assert len(value) > 255  # a 2048-bit key does not fit one string
    dns_server.publish_domain_records("example.test", created["dns_records"], skip=("dkim",))
    # split at odd places, with whitespace inside p= as some providers add
    parts = ["v=DKIM1; k=rsa; ", "p=" + key[:100], " " + key[100:250], key[250:]]
    dns_server.publish("gent._domainkey.example.test", "TXT", parts)
    answer = verify(dns_client, owner)
    dkim = record(answer["dns_records"], "dkim")
    assert dkim["status"] == "ok", dkim
    assert dkim["found"] == ["".join(parts)]
    assert answer["status"] == "verified"


def test_records_published_in_another_case_and_order_are_ok(dns_client, dns_server, world_for):
    owner = world_for(dns_client).owner()
    created = add_domain(dns_client, owner)
    recs = {r["purpose"]: r for r in created["dns_records"] if not is_ed25519(r)}
    key = recs["dkim"]["value"].split("p=", 1)[1]
    token = recs["verification"]["value"]
    dns_server.publish("example.test", "MX", "10 MAIL.GENTBOX.TEST.", restart=False)
    dns_server.publish("example.test", "TXT", "v=spf1 +A:Mail.Gentbox.Test ~all", restart=False)
    dns_server.publish("gent._domainkey.example.test", "TXT", f"P={key}; K=rsa; V=DKIM1", restart=False)
    dns_server.publish("_dmarc.example.test", "TXT", "v=DMARC1; p=reject", restart=False)  # stricter
    dns_server.publish("_gent-verify.example.test", "TXT", token, restart=False)
    dns_server.restart()
    answer = verify(dns_client, owner)
    assert answer["status"] == "verified", answer
    assert {statuses(answer["dns_records"])[p] for p in REQUIRED} == {"ok"}


def test_an_idn_domain_end_to_end(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = add_domain(dns_client, owner, "bücher.test")
    assert created["domain"] == "xn--bcher-kva.test"
    assert "postmaster@xn--bcher-kva.test" in record(created["dns_records"], "dmarc")["value"]
    for spelling in ("bücher.test", "xn--bcher-kva.test", "BÜCHER.test"):
        got = dns_client.get(f"/v1/domains/{spelling}/", headers=owner.auth)
        assert got.status_code == 200 and got.json["domain_id"] == created["domain_id"], spelling
    assert_error(dns_client.post("/v1/domains/", json={"domain": "xn--bcher-kva.test"}, headers=owner.auth),
                 409, "conflict")

    assert verify(dns_client, owner, "bücher.test")["status"] == "pending"
    dns_server.publish_domain_records("xn--bcher-kva.test", created["dns_records"])
    answer = verify(dns_client, owner, "bücher.test")
    assert answer["status"] == "verified", answer
    assert verified_events(world, created["domain_id"]) == 1

    inbox = dns_client.post("/v1/inboxes/", json={"address": "agent@bücher.test"}, headers=owner.auth)
    assert inbox.status_code == 201, inbox.json
    assert inbox.json["address"] == "agent@xn--bcher-kva.test"
    again = dns_client.post("/v1/inboxes/", json={"address": "Agent@xn--bcher-kva.test"}, headers=owner.auth)
    assert_error(again, 409, "conflict")


# --- the owner's path ----------------------------------------------------------------------
def test_next_step_moves_as_the_owner_acts(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()

    def step() -> dict:
        me = dns_client.get("/v1/users/me/", headers=owner.auth)
        assert me.status_code == 200
        return me.json["next_step"]

    assert step()["code"] == "add_domain"
    created = add_domain(dns_client, owner)
    assert step() == {"code": "verify_domain", "method": "POST", "path": "/v1/domains/example.test/verify/",
                      "message": step()["message"]}
    assert "GET /v1/domains/example.test/" in step()["message"]
    verify(dns_client, owner)  # nothing published yet
    assert step()["code"] == "verify_domain"
    dns_server.publish_domain_records("example.test", created["dns_records"])
    assert verify(dns_client, owner)["status"] == "verified"
    assert step()["code"] == "create_inbox"
    inbox = dns_client.post("/v1/inboxes/", json={"address": "agent@example.test"}, headers=owner.auth)
    assert inbox.status_code == 201
    assert step()["code"] == "create_token"
    token = dns_client.post("/v1/tokens/", json={"inbox_id": inbox.json["inbox_id"], "label": "agent",
                                                 "scopes": ["email:send", "email:read"]}, headers=owner.auth)
    assert token.status_code == 201, token.json
    assert step()["code"] == "send_first_message"


# --- deletion ------------------------------------------------------------------------------
def test_deleting_a_domain_removes_it_and_its_keys(client, world):
    owner = world.owner()
    created = add_domain(client, owner)
    assert count(world, DkimKey, DkimKey.domain_id == created["domain_id"], DkimKey.algorithm == "rsa") == 1
    resp = client.delete("/v1/domains/example.test/", headers=owner.auth)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_error(client.get("/v1/domains/example.test/", headers=owner.auth), 404, "not_found")
    assert count(world, Domain) == 0 and count(world, DkimKey) == 0
    again = add_domain(client, owner)  # the name is free again, with a new key
    assert again["domain_id"] != created["domain_id"]
    assert record(again["dns_records"], "dkim")["value"] != record(created["dns_records"], "dkim")["value"]
