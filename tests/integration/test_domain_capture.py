"""Issue 14, point 1: domain capture. Adding a domain claims it, proves nothing, and changes no one
else's mail: only the verified holder's domain is hosted here. Several tenants may hold pending
claims on one name; the first to verify wins and the others lapse; an unverified claim expires.

Real peers throughout: the worker delivers to an aiosmtpd MX found through dnsmasq, the listener
is spoken to over SMTP, verification reads the records from dnsmasq.
"""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from appliance import clock
from appliance.errors import ConflictError
from appliance.ids import new_id
from appliance.models import Domain, Event, SystemMail
from appliance.services.domains import domains
from appliance.services.identity.auth import authenticate
from appliance.worker import Worker
from tests.helpers import alembic, assert_error
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401

CUSTOMER = "tenant-a-customer.test"


@pytest.fixture
def api(make_app, make_settings, dns_server):
    """The API with DNS checks against the test dnsmasq (the one remote_world publishes in)."""
    return make_app(make_settings(dns_servers=dns_server.address, dns_timeout=2.0)).test_client()


def add(api, person, name: str):
    return api.post("/v1/domains/", json={"domain": name}, headers=person.auth)


def get(api, person, name: str) -> dict:
    resp = api.get(f"/v1/domains/{name}/", headers=person.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json


def verify(api, person, name: str):
    return api.post(f"/v1/domains/{name}/verify/", headers=person.auth)


def publish_only(dns_server, name: str, records: list[dict]) -> None:
    """The zone as its owner publishes it now: exactly these records under name."""
    dns_server.records = [r for r in dns_server.records if not (r[0] == name or r[0].endswith("." + name))]
    dns_server.publish_domain_records(name, records)


def events_of(store, tenant_id: str, type_: str) -> list[Event]:
    with store.read_sessions() as db:
        return list(db.scalars(select(Event).where(Event.tenant_id == tenant_id, Event.type == type_)))


# --- mail is not captured by an unverified claim ----------------------------------------------
def test_another_tenants_unverified_claim_does_not_capture_mail_to_the_domain(
        world, store, client, make_settings, remote_world) -> None:
    alice, bob = world.owner(), world.owner()
    agent = world.sender(alice, "agent@alice-sends.example")
    with store.session() as db:  # the owners' own sign-up emails are not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    mx, _ = remote_world.receivers
    remote_world.domain(CUSTOMER, mx=[(10, mx)])

    claimed = add(client, bob, CUSTOMER)  # bob claims alice's customer's domain; he cannot verify it
    assert claimed.status_code == 201 and claimed.json["status"] == "pending", claimed.json
    sent = client.post("/v1/messages/", json={"to": [{"email": f"ann@{CUSTOMER}"}], "subject": "Invoice",
                                              "text_body": "Attached."}, headers=agent.auth)
    assert sent.status_code == 201, sent.json
    world.signup_link(f"ada@{CUSTOMER}")  # the appliance's own mail: a sign-up link for the domain

    worker = Worker(store, make_settings(delivery_port=remote_world.port, dns_servers=remote_world.dns_address,
                                         dns_lifetime=1.0, delivery_timeout=3.0))
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    delivered = {rcpt for d in mx.wait_for(2) for rcpt in d.rcpt_tos}
    assert delivered == {f"ann@{CUSTOMER}", f"ada@{CUSTOMER}"}  # both reached the real MX
    message = client.get(f"/v1/messages/{sent.json['message_id']}/", headers=agent.auth).json
    assert message["status"] == "sent", message
    assert message["delivery"][0]["smtp_reply"].startswith("250") and "locally" not in message["delivery"][0]["smtp_reply"]
    bounces = client.get("/v1/messages/", query_string={"direction": "inbound"}, headers=agent.auth).json["results"]
    assert bounces == []


def test_the_listener_takes_mail_only_for_the_verified_holders_inboxes(world, store, client, smtp_listener) -> None:
    alice, bob = world.owner(), world.owner()
    world.inbox(alice, "agent@shared-name.test")  # alice's domain, verified
    add(client, alice, "alice-pending.test")
    assert add(client, bob, "alice-pending.test").status_code == 201  # two pending claims, no inbox
    address = smtp_listener()
    with smtp_client(address) as smtp:
        assert smtp.mail("someone@sender.example")[0] == 250
        assert smtp.rcpt("agent@shared-name.test")[0] == 250
        assert smtp.rcpt("agent@alice-pending.test") == (550, b"5.1.1 No such mailbox here")


# --- several claims, one winner -----------------------------------------------------------------
def test_the_first_tenant_to_verify_wins_and_the_other_claim_lapses(api, world_for, dns_server, store) -> None:
    world = world_for(api)
    alice, bob, carol = world.owner(), world.owner(), world.owner()
    a = add(api, alice, "contested.test")
    b = add(api, bob, "Contested.TEST")
    assert a.status_code == 201 and b.status_code == 201, (a.json, b.json)
    assert a.json["domain_id"] != b.json["domain_id"]
    assert a.json["status"] == b.json["status"] == "pending"
    assert a.json["expires_at"] and b.json["lapsed_at"] is None
    assert add(api, alice, "contested.test").status_code == 409  # one claim per tenant

    publish_only(dns_server, "contested.test", a.json["dns_records"])  # alice controls the zone
    won = verify(api, alice, "contested.test")
    assert won.status_code == 200 and won.json["status"] == "verified", won.json
    assert won.json["expires_at"] is None

    lapsed = get(api, bob, "contested.test")
    assert lapsed["status"] == "lapsed" and lapsed["lapsed_at"] and lapsed["expires_at"] is None
    [event] = events_of(store, bob.tenant_id, "domain.claim_lapsed")
    assert event.resource_id == b.json["domain_id"] and (event.actor_kind, event.actor_id) == ("system", None)
    assert event.payload == {"domain": "contested.test"}  # names no winner

    publish_only(dns_server, "contested.test", b.json["dns_records"])  # even with bob's records live
    err = assert_error(verify(api, bob, "contested.test"), 409, "domain_claim_lapsed")
    assert err["fix"]
    assert get(api, alice, "contested.test")["status"] == "verified"

    taken = add(api, carol, "contested.test")
    err = assert_error(taken, 409, "domain_taken", field="domain")
    assert err["fix"]
    body = taken.get_data(as_text=True)
    for secret in (alice.tenant_id, alice.email, alice.user_id, a.json["domain_id"]):
        assert secret not in body
    assert api.get("/v1/domains/", headers=carol.auth).json["results"] == []

    # The holder lets the name go: bob's lapsed claim gives way to a fresh one.
    assert api.delete("/v1/domains/contested.test/", headers=alice.auth).status_code == 204
    again = add(api, bob, "contested.test")
    assert again.status_code == 201 and again.json["status"] == "pending", again.json
    assert again.json["domain_id"] != b.json["domain_id"]


def test_the_database_allows_one_verified_holder_per_name(store, world) -> None:
    alice, bob = world.owner(), world.owner()
    now = clock.utcnow()

    def claim(person, status: str) -> Domain:
        return Domain(id=new_id("dom"), tenant_id=person.tenant_id, name="unique.test", status=status,
                      created_at=now, verified_at=now if status == "verified" else None, verification_token="t")
    with store.session() as db:
        db.add_all([claim(alice, "verified"), claim(bob, "pending")])  # a verified holder and a claim: fine
    with pytest.raises(IntegrityError), store.session() as db:
        db.execute(update(Domain).where(Domain.tenant_id == bob.tenant_id).values(status="verified"))
    with pytest.raises(IntegrityError), store.session() as db:
        db.add(claim(bob, "pending"))  # a second claim of the same tenant


# --- expiry -------------------------------------------------------------------------------------
def test_an_unverified_claim_expires_and_cannot_be_verified(api, world_for, dns_server) -> None:
    world = world_for(api)
    bob = world.owner()
    first = add(api, bob, "slow.test").json
    expires = dt.datetime.fromisoformat(first["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(days=7) - dt.timedelta(minutes=1) < expires - clock.utcnow() <= dt.timedelta(days=7)
    publish_only(dns_server, "slow.test", first["dns_records"])

    clock.advance(dt.timedelta(days=7, seconds=1))
    bob = world.login(bob.email)  # a fresh session: the first one's token expired meanwhile
    assert get(api, bob, "slow.test")["status"] == "expired"
    err = assert_error(verify(api, bob, "slow.test"), 409, "domain_claim_expired")
    assert "POST /v1/domains/" in err["fix"]
    assert get(api, bob, "slow.test")["status"] == "expired"  # the DNS did not revive it

    renewed = add(api, bob, "slow.test")  # a new claim: new token, new window
    assert renewed.status_code == 201 and renewed.json["status"] == "pending", renewed.json
    token = next(r["value"] for r in renewed.json["dns_records"] if r["purpose"] == "verification")
    assert token != next(r["value"] for r in first["dns_records"] if r["purpose"] == "verification")
    publish_only(dns_server, "slow.test", renewed.json["dns_records"])
    assert verify(api, bob, "slow.test").json["status"] == "verified"


def test_the_claim_lifetime_is_a_setting(make_app, make_settings, world_for) -> None:
    api = make_app(make_settings(domain_claim_ttl=3600)).test_client()
    world = world_for(api)
    bob = world.owner()
    add(api, bob, "hour.test")
    clock.advance(dt.timedelta(minutes=59))
    assert get(api, world.login(bob.email), "hour.test")["status"] == "pending"
    clock.advance(dt.timedelta(minutes=2))
    assert get(api, world.login(bob.email), "hour.test")["status"] == "expired"


# --- the migration ------------------------------------------------------------------------------
def test_the_migration_keeps_domains_keys_and_inboxes_both_ways(store, world, client) -> None:
    alice, bob, carol, dave = world.owner(), world.owner(), world.owner(), world.owner()
    world.sender(alice, "agent@kept.test")  # verified, with an inbox and an active DKIM key
    with store.session() as db:  # bob's claim lapsed when alice verified: goes on the way down
        db.add(Domain(id=new_id("dom"), tenant_id=bob.tenant_id, name="kept.test", status="lapsed",
                      created_at=clock.utcnow(), lapsed_at=clock.utcnow(), verification_token="t"))
    assert add(client, carol, "solo.test").status_code == 201  # the older of two pending claims stays
    assert add(client, dave, "solo.test").status_code == 201

    def rows(keys: str = "") -> dict[str, tuple]:
        with store.engine.connect() as conn:
            found = conn.exec_driver_sql(
                f"SELECT d.tenant_id, d.name, d.status, (SELECT count(*) FROM dkim_keys k WHERE k.domain_id = d.id{keys}), "
                "(SELECT count(*) FROM inboxes i WHERE i.domain_id = d.id) FROM domains d").all()
        return {tenant: tuple(rest) for tenant, *rest in found}
    # Before 0041 a domain had its RSA key only (its Ed25519 key goes on the way down and comes back
    # at the next verify, tests/integration/test_dkim_ed25519.py).
    before = rows(" AND k.algorithm = 'rsa'")
    kept = {t: v for t, v in before.items() if t not in (bob.tenant_id, dave.tenant_id)}
    alembic(store, "downgrade", "0008_search_content")
    assert rows() == kept
    with store.engine.connect() as conn:  # dave's DKIM key went with his claim
        assert conn.exec_driver_sql("SELECT count(*) FROM dkim_keys").scalar() == 2
    alembic(store, "upgrade", "head")
    assert rows() == kept
    assert kept[alice.tenant_id] == ("kept.test", "verified", 1, 1)
    assert kept[carol.tenant_id] == ("solo.test", "pending", 1, 0)
    with store.read_sessions() as db:
        solo = db.scalar(select(Domain).where(Domain.name == "solo.test"))
        kept = db.scalar(select(Domain).where(Domain.name == "kept.test"))
    assert kept.expires_at is None
    assert dt.timedelta(days=6) < solo.expires_at - clock.utcnow() <= dt.timedelta(days=7)
    with store.engine.connect() as conn:  # foreign keys are enforced again (SQLite turned them off)
        if store.engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with pytest.raises(IntegrityError):
            conn.exec_driver_sql(f"DELETE FROM domains WHERE tenant_id = '{alice.tenant_id}'")
    assert add(client, bob, "kept.test").status_code == 409  # the rules hold after the round trip
    assert add(client, dave, "solo.test").status_code == 201


def test_two_verifies_at_once_leave_one_holder_and_one_lapsed_claim(api, world_for, dns_server, store) -> None:
    world = world_for(api)
    alice, bob = world.owner(), world.owner()
    claims = {p.tenant_id: add(api, p, "race.test").json for p in (alice, bob)}
    # Both claims' records are live at once (one SPF record: two would be a permanent error).
    dns_server.publish_domain_records("race.test", claims[alice.tenant_id]["dns_records"])
    dns_server.publish_domain_records("race.test", claims[bob.tenant_id]["dns_records"], skip=("mx", "spf", "dmarc"))
    settings = api.application.extensions["gentbox"].settings
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def verify_as(person) -> None:
        with store.session() as db:
            principal = authenticate(db, person.access_token)
        barrier.wait(10)
        try:
            with store.session() as db:
                outcomes[person.tenant_id] = domains.verify_domain(db, settings, principal, "race.test").status
        except ConflictError as exc:
            outcomes[person.tenant_id] = exc.code
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes[person.tenant_id] = repr(exc)
    threads = [threading.Thread(target=verify_as, args=(p,)) for p in (alice, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes.values()) == ["domain_claim_lapsed", "verified"], outcomes
    statuses = sorted(get(api, p, "race.test")["status"] for p in (alice, bob))
    assert statuses == ["lapsed", "verified"]
    loser = next(t for t, outcome in outcomes.items() if outcome != "verified")
    assert len(events_of(store, loser, "domain.claim_lapsed")) == 1
    winner = next(t for t in outcomes if t != loser)
    assert len(events_of(store, winner, "domain.verified")) == 1
