"""Ed25519 DKIM beside RSA (issue 26, point 1): every sent message carries an ed25519-sha256
(RFC 8463) and an rsa-sha256 signature, each verified by dkimpy and by Perl's Mail::DKIM against
the records the appliance told the owner to publish, served by the test dnsmasq; a domain made
before migration 0041 gets its Ed25519 key; the records are listed by the API and the page;
rotation covers both keys; the doctor warns (not fails) while the Ed25519 record is missing.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass

import dkim
import dkim.util
import pytest
from sqlalchemy import select

from appliance import doctor
from appliance.dns import Resolver
from appliance.models import DkimKey, Domain, MessageRaw
from tests.helpers import alembic
from tests.integration.remote_mail import independent_dkim_check
from tests.webui.conftest import WebClient, text_of
from tests.world import World

DOMAIN = "ed.test"
PNG = base64.b64encode(bytes(range(256)) * 8).decode()
MESSAGES = {
    "7bit": {"subject": "Plain", "text_body": "Hello, plain ASCII.\n"},
    "8bit": {"subject": "Grüße aus Köln", "text_body": "Grüße, ça va? Ünïcödé in the body.\n"},
    "multipart": {"subject": "With a file", "text_body": "See attached.\n", "html_body": "<p>See <b>attached</b>.</p>",
                  "attachments": [{"filename": "pic.png", "content_type": "image/png", "content_base64": PNG}]},
}
BOTH_PASS = {"rsa-sha256": (True, "pass"), "ed25519-sha256": (True, "pass")}


@pytest.fixture
def settings_for_dns(make_settings, dns_server):
    return make_settings(dns_servers=dns_server.address, dns_timeout=2.0)


@pytest.fixture
def dns_app(make_app, settings_for_dns):
    return make_app(settings_for_dns)


@dataclass
class Sender:
    world: World
    client: object
    owner: object
    agent: object

    def send(self, **body) -> bytes:
        """The signed bytes of a message sent through the API (the Sent copy is what leaves)."""
        resp = self.client.post("/v1/messages/", json={"to": [{"email": "ann@partner.example"}], **body},
                                headers=self.agent.auth)
        assert resp.status_code in (200, 201, 202), resp.get_data(as_text=True)
        with self.world.store.session() as db:
            return bytes(db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == resp.json["message_id"])))

    def domain(self) -> dict:
        return self.client.get(f"/v1/domains/{DOMAIN}/", headers=self.owner.auth).json

    def verify(self) -> dict:
        answer = self.client.post(f"/v1/domains/{DOMAIN}/verify/", headers=self.owner.auth)
        assert answer.status_code == 200, answer.json
        return answer.json


def dkim_records(domain_object: dict) -> dict[str, dict]:
    return {r["host"]: r for r in domain_object["dns_records"] if r["purpose"] == "dkim"}


def make_sender(dns_app, dns_server, world_for, *, publish_skip: tuple[str, ...] = ()) -> Sender:
    client = dns_app.test_client()
    world = world_for(client)
    owner = world.owner()
    created = client.post("/v1/domains/", json={"domain": DOMAIN}, headers=owner.auth)
    assert created.status_code == 201, created.json
    records = [r for r in created.json["dns_records"] if r["host"] not in publish_skip]
    dns_server.publish_domain_records(DOMAIN, records)
    sender = Sender(world, client, owner, None)
    assert sender.verify()["status"] == "verified"
    inbox_id = world.inbox(owner, f"agent@{DOMAIN}")
    sender.agent = world.agent(owner, inbox_id, ["email:send", "email:read"])
    return sender


@pytest.fixture
def sender(dns_app, dns_server, world_for) -> Sender:
    return make_sender(dns_app, dns_server, world_for)


def dnsfunc_for(settings):
    resolver = Resolver(settings)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        answer = resolver.query(name.decode("ascii"), "TXT")
        return "".join(answer.records).encode() if answer.records else None
    return dnsfunc


def verdicts(raw: bytes, settings, dns_port: int) -> dict[str, tuple[bool, str]]:
    """{a= of each DKIM-Signature: (dkimpy's verdict, Mail::DKIM's result)}."""
    dnsfunc = dnsfunc_for(settings)
    signatures = [v for n, v in dkim.DKIM(raw).headers if n.lower() == b"dkim-signature"]
    ours = {dkim.util.parse_tag_value(value)[b"a"].decode(): _dkimpy_verdict(raw, index, dnsfunc)
            for index, value in enumerate(signatures)}
    theirs = {s["a"]: s["result"] for s in independent_dkim_check(raw, dns_port)["signatures"]}
    assert set(ours) == set(theirs), (ours, theirs)
    return {a: (ours[a], theirs[a]) for a in ours}


def _dkimpy_verdict(raw: bytes, index: int, dnsfunc) -> bool:
    try:
        return dkim.DKIM(raw).verify(idx=index, dnsfunc=dnsfunc)
    except dkim.DKIMException:  # a body hash mismatch is raised, not returned
        return False


def selectors(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    found = re.findall(r"^DKIM-Signature:(.*?)(?=\r\n[^ \t]|\Z)", head, flags=re.S | re.M)
    tags = [dict(p.split("=", 1) for p in "".join(s.split()).split(";") if "=" in p) for s in found]
    return {t["a"]: t["s"] for t in tags}


# --- the signatures ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_a_sent_message_carries_ed25519_and_rsa_signatures_that_dkimpy_and_mail_dkim_verify(
        sender, dns_server, settings_for_dns, kind):
    raw = sender.send(**MESSAGES[kind])
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"DKIM-Signature:") == 2
    assert head.startswith(b"DKIM-Signature: v=1; a=rsa-sha256")  # on top, for first-signature-only checkers
    assert selectors(raw) == {"rsa-sha256": "gent", "ed25519-sha256": "gented"}
    if kind == "8bit":
        assert b"Content-Transfer-Encoding: 8bit" in raw and "Grüße, ça va?".encode() in raw
    if kind == "multipart":
        assert b"multipart/mixed" in raw and b"pic.png" in raw
    assert verdicts(raw, settings_for_dns, dns_server.port) == BOTH_PASS


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_a_tampered_body_fails_both_signatures_with_both_verifiers(sender, dns_server, settings_for_dns, kind):
    raw = sender.send(**MESSAGES[kind])
    head, body = raw.split(b"\r\n\r\n", 1)
    tampered = head + b"\r\n\r\n" + body.replace(b"e", b"3", 1)
    assert tampered != raw
    assert verdicts(tampered, settings_for_dns, dns_server.port) == {"rsa-sha256": (False, "fail"),
                                                                     "ed25519-sha256": (False, "fail")}


# --- the records -------------------------------------------------------------------------------
def test_the_domain_lists_both_dkim_records_in_the_api_and_on_its_page(dns_app, dns_server, world_for):
    client = dns_app.test_client()
    world = world_for(client)
    owner = world.owner()
    created = client.post("/v1/domains/", json={"domain": DOMAIN}, headers=owner.auth).json
    records = dkim_records(created)
    assert list(records) == ["gent._domainkey", "gented._domainkey"]
    rsa, ed = records["gent._domainkey"], records["gented._domainkey"]
    assert rsa["value"].startswith("v=DKIM1; k=rsa; p=") and rsa["required"] is True
    assert ed["value"].startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed["value"].split("p=", 1)[1], validate=True)) == 32  # the raw key (RFC 8463)
    assert ed["required"] is False  # RSA verifies without it: the domain verifies without it too
    with world.store.session() as db:
        keys = db.execute(select(DkimKey.selector, DkimKey.algorithm, DkimKey.status)
                          .where(DkimKey.domain_id == created["domain_id"]).order_by(DkimKey.selector)).all()
    assert [tuple(k) for k in keys] == [("gent", "rsa", "active"), ("gented", "ed25519", "pending")]

    web = WebClient(client)
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/domains/{DOMAIN}/"))
    assert "gent._domainkey" in page and "gented._domainkey" in page
    assert "DKIM signing key (RSA)" in page and "DKIM signing key (Ed25519)" in page
    assert ed["value"] in page


def test_the_ed25519_key_signs_only_once_its_record_is_seen_and_the_doctor_warns_until_then(
        dns_app, dns_server, world_for, settings_for_dns):
    sender = make_sender(dns_app, dns_server, world_for, publish_skip=("gented._domainkey",))
    assert dkim_records(sender.domain())["gented._domainkey"]["status"] == "missing"
    raw = sender.send(**MESSAGES["7bit"])
    assert selectors(raw) == {"rsa-sha256": "gent"}  # an unpublished key never signs
    assert verdicts(raw, settings_for_dns, dns_server.port) == {"rsa-sha256": (True, "pass")}

    [check] = doctor.check_domains(doctor.Context(sender.world.store, settings_for_dns, Resolver(settings_for_dns),
                                                  dt.datetime.now(dt.timezone.utc)))
    assert check.status == doctor.WARN and "gented._domainkey" in check.detail and "RSA still signs" in check.detail
    assert "k=ed25519" in check.fix

    ed = dkim_records(sender.domain())["gented._domainkey"]
    dns_server.publish_domain_records(DOMAIN, [ed])
    assert dkim_records(sender.verify())["gented._domainkey"]["status"] == "ok"
    [check] = doctor.check_domains(doctor.Context(sender.world.store, settings_for_dns, Resolver(settings_for_dns),
                                                  dt.datetime.now(dt.timezone.utc)))
    assert check.status == doctor.PASS, check
    raw = sender.send(**MESSAGES["7bit"])
    assert verdicts(raw, settings_for_dns, dns_server.port) == BOTH_PASS


def test_rotation_makes_a_new_key_of_each_algorithm_and_each_signs_once_published(
        sender, dns_server, settings_for_dns):
    rotated = sender.client.post(f"/v1/domains/{DOMAIN}/dkim/rotate/", headers=sender.owner.auth)
    assert rotated.status_code == 200, rotated.json
    records = dkim_records(rotated.json)
    assert list(records) == ["gent._domainkey", "gented._domainkey", "gent2._domainkey", "gented2._domainkey"]
    assert "k=ed25519" in records["gented2._domainkey"]["value"] and "k=rsa" in records["gent2._domainkey"]["value"]
    assert selectors(sender.send(**MESSAGES["7bit"])) == {"rsa-sha256": "gent", "ed25519-sha256": "gented"}

    dns_server.publish_domain_records(DOMAIN, [records["gent2._domainkey"], records["gented2._domainkey"]])
    answer = sender.verify()
    assert {h: r["status"] for h, r in dkim_records(answer).items()} == dict.fromkeys(records, "ok")
    raw = sender.send(**MESSAGES["multipart"])
    assert selectors(raw) == {"rsa-sha256": "gent2", "ed25519-sha256": "gented2"}
    assert verdicts(raw, settings_for_dns, dns_server.port) == BOTH_PASS


# --- a domain from before migration 0041 ---------------------------------------------------------
def test_a_domain_created_before_the_migration_gets_its_ed25519_key_and_then_signs_with_both(
        dns_app, dns_server, world_for, settings_for_dns):
    sender = make_sender(dns_app, dns_server, world_for)
    store = sender.world.store
    alembic(store, "downgrade", "0040_audit_owner")  # the schema before Ed25519: one RSA key per domain
    alembic(store, "upgrade", "head")
    with store.session() as db:
        domain_id = db.scalar(select(Domain.id).where(Domain.name == DOMAIN))
        keys = db.execute(select(DkimKey.selector, DkimKey.algorithm).where(DkimKey.domain_id == domain_id)).all()
    assert [tuple(k) for k in keys] == [("gent", "rsa")]
    assert list(dkim_records(sender.domain())) == ["gent._domainkey"]
    raw = sender.send(**MESSAGES["7bit"])
    assert selectors(raw) == {"rsa-sha256": "gent"}  # sending goes on as before
    [check] = doctor.check_domains(doctor.Context(store, settings_for_dns, Resolver(settings_for_dns),
                                                  dt.datetime.now(dt.timezone.utc)))
    assert check.status == doctor.WARN and "no Ed25519 DKIM key yet" in check.detail

    # the next verify makes it (pending); once its record is published, the one after activates it
    dns_server.remove(f"gented._domainkey.{DOMAIN}")
    answer = sender.verify()
    ed = dkim_records(answer)["gented._domainkey"]
    assert "k=ed25519" in ed["value"] and ed["status"] == "missing" and answer["status"] == "verified"
    dns_server.publish_domain_records(DOMAIN, [ed])
    assert dkim_records(sender.verify())["gented._domainkey"]["status"] == "ok"
    raw = sender.send(**MESSAGES["8bit"])
    assert verdicts(raw, settings_for_dns, dns_server.port) == BOTH_PASS
