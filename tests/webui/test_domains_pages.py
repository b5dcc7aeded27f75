"""The domains pages: add, the DNS records with a status each against a real DNS server, verify,
DKIM rotation, delete with confirmation; members and other tenants are kept out."""
from __future__ import annotations

import re

import pytest
from markupsafe import escape
from sqlalchemy import select

from appliance.models import DkimKey, Domain
from tests.webui.conftest import WebClient, text_of


@pytest.fixture
def dns_app(make_app, make_settings, dns_server):  # noqa: ANN001, ANN201
    # dnsmasq answers at once; the timeout only bounds a lost answer, and CI's load once took a
    # reply past 2 s (a record shown "unknown" instead of "missing").
    return make_app(make_settings(dns_servers=dns_server.address, dns_timeout=10.0))


@pytest.fixture
def dns_web(dns_app) -> WebClient:  # noqa: ANN001
    return WebClient(dns_app.test_client())


def _statuses(html: str) -> dict[str, str]:
    """purpose -> the status badge of its row."""
    rows = re.findall(r'<tr data-purpose="([a-z_]+)" data-required="(yes|no)">\s*<td data-label="Status">'
                      r'<span class="status status-\w+" data-record-status>(\w+)</span>', html)
    return {purpose: status for purpose, _, status in rows}


def _records(store, name: str) -> list[dict]:
    from appliance.services.domains import domains
    with store.session() as db:
        domain = db.scalar(select(Domain).where(Domain.name == name))
        return domains.domain_to_dict(db, store.settings, domain)["dns_records"]


def test_an_empty_list_invites_to_add_a_domain(web, world):
    web.sign_in(world.owner().email)
    page = text_of(web.get("/admin/domains/"))
    assert "No domains yet: add one to start." in page
    assert 'name="csrf_token"' in page and '<label for="f-domain">Domain name</label>' in page


def test_adding_verifying_and_deleting_a_domain(dns_web, dns_app, dns_server, world_for):
    world = world_for(dns_app.test_client())
    store = dns_app.extensions["gentbox"]
    owner = world.owner()
    dns_web.sign_in(owner.email)

    resp = dns_web.post("/admin/domains/", {"domain": "Shop.TEST"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/domains/shop.test/"
    page = text_of(dns_web.get("/admin/domains/shop.test/"))
    assert "Added shop.test." in page
    statuses = _statuses(page)
    assert list(statuses) == ["mx", "spf", "dkim", "dmarc", "verification", "mta_sts", "tls_rpt"]
    assert set(statuses.values()) == {"missing"}  # the first look at DNS ran on adding
    assert page.count('data-required="yes"') == 5
    records = _records(store, "shop.test")
    for record in records:  # every value is on the page, with a copy button holding it
        assert f'data-copy="{escape(record["value"])}"' in page

    # One record wrong, the rest right: the domain stays pending and the wrong one says mismatch.
    dns_server.publish_domain_records("shop.test", records, skip=("dmarc",))
    dns_server.publish("_dmarc.shop.test", "TXT", "v=DMARC1; p=none; rua=mailto:someone@else.test")
    page = text_of(dns_web.post("/admin/domains/shop.test/verify/", follow_redirects=True))
    assert "1 required record(s) of shop.test are not right yet" in page
    assert _statuses(page)["dmarc"] == "mismatch" and _statuses(page)["mx"] == "ok"
    assert "Found instead:" in page

    dns_server.remove("_dmarc.shop.test")
    dns_server.publish_domain_records("shop.test", [r for r in records if r["purpose"] == "dmarc"])
    page = text_of(dns_web.post("/admin/domains/shop.test/verify/", follow_redirects=True))
    assert "shop.test is verified: every required record is published." in page
    assert set(_statuses(page).values()) == {"ok"}
    with store.session() as db:
        assert db.scalar(select(Domain.status).where(Domain.name == "shop.test")) == "verified"

    # DKIM rotation asks first, then adds a pending selector whose record is missing.
    resp = dns_web.post("/admin/domains/shop.test/dkim/rotate/")
    assert resp.status_code == 200 and "Start a DKIM key rotation for shop.test?" in text_of(resp)
    page = text_of(dns_web.post("/admin/domains/shop.test/dkim/rotate/", {"confirm": "yes"}, follow_redirects=True))
    assert "A new DKIM key is ready" in page
    with store.session() as db:
        keys = db.scalars(select(DkimKey.status).join(Domain, Domain.id == DkimKey.domain_id)
                          .where(Domain.name == "shop.test")).all()
    assert sorted(keys) == ["active", "active", "pending", "pending"]  # RSA and Ed25519 (issue 26)
    assert page.count('data-purpose="dkim"') == 4

    # Deleting asks first; confirmed, the domain is gone.
    resp = dns_web.post("/admin/domains/shop.test/delete/")
    assert "Delete the domain shop.test?" in text_of(resp)
    with store.session() as db:
        assert db.scalar(select(Domain.id).where(Domain.name == "shop.test")) is not None
    page = text_of(dns_web.post("/admin/domains/shop.test/delete/", {"confirm": "yes"}, follow_redirects=True))
    assert "Deleted shop.test." in page and "No domains yet: add one to start." in page


def test_service_errors_become_flash_messages(web, world):
    owner = world.owner()
    world.inbox(owner, "agent@busy.example.com")
    web.sign_in(owner.email)
    page = text_of(web.post("/admin/domains/", {"domain": "co.uk"}, follow_redirects=True))
    assert "is a public suffix" in page
    page = text_of(web.post("/admin/domains/", {"domain": "busy.example.com"}, follow_redirects=True))
    assert "busy.example.com is already registered on this appliance." in page
    page = text_of(web.post("/admin/domains/busy.example.com/delete/", {"confirm": "yes"}, follow_redirects=True))
    assert "busy.example.com still has active inboxes." in page


def test_another_tenants_domain_is_not_found_and_members_are_refused(web_for, world, store):
    stranger = world.owner()
    world.inbox(stranger, "agent@theirs.example.com")
    me = world.owner()
    web = web_for()
    web.sign_in(me.email)
    assert web.get("/admin/domains/theirs.example.com/").status_code == 404
    assert web.post("/admin/domains/theirs.example.com/delete/").status_code == 404
    assert web.post("/admin/domains/theirs.example.com/dkim/rotate/", {"confirm": "yes"}).status_code == 404
    assert "theirs.example.com" not in text_of(web.get("/admin/domains/"))
    member = world.member(me)
    other = web_for()
    other.sign_in(member.email)
    assert other.get("/admin/domains/").status_code == 403
    assert other.post("/admin/domains/", {"domain": "new.example.com"}).status_code == 403
    with store.session() as db:
        assert db.scalar(select(Domain.id).where(Domain.name == "new.example.com")) is None
