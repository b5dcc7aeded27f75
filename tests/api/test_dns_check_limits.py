"""Issue 14.9 (b): DNS checks (verify now, check) are limited per tenant per hour, counted in the
store's rate counters: the API answers 429 rate_limited with Retry-After, the web UI a flash
message; another tenant keeps its own allowance. DNS is a real server (dnsmasq)."""
from __future__ import annotations

import pytest

from tests.helpers import assert_error
from tests.webui.conftest import WebClient, text_of

LIMIT = 3


@pytest.fixture
def limited(make_app, make_settings, dns_server):
    app = make_app(make_settings(dns_servers=dns_server.address, dns_timeout=2.0, rate_limit_dns_checks=LIMIT))
    return app


def add(client, person, name: str) -> None:  # noqa: ANN001
    resp = client.post("/v1/domains/", json={"domain": name}, headers=person.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_the_api_answers_429_past_the_tenants_hourly_dns_checks(limited, world_for) -> None:
    client = limited.test_client()
    world = world_for(client)
    alice, bob = world.owner(), world.owner()
    add(client, alice, "alice.test")
    add(client, alice, "alice-two.test")
    add(client, bob, "bob.test")
    calls = [("POST", "/v1/domains/alice.test/verify/"), ("GET", "/v1/domains/alice-two.test/check/"),
             ("POST", "/v1/domains/alice-two.test/verify/")]
    for method, path in calls:  # both kinds of check, on any of the tenant's domains, share one count
        assert client.open(path, method=method, headers=alice.auth).status_code == 200, path
    for method, path in calls:
        resp = client.open(path, method=method, headers=alice.auth)
        body = assert_error(resp, 429, "rate_limited")
        assert "DNS checks" in body["message"] and body["fix"]
        assert 0 < int(resp.headers["Retry-After"]) <= 3600
    assert client.post("/v1/domains/bob.test/verify/", headers=bob.auth).status_code == 200  # bob's own allowance
    assert client.get("/v1/domains/alice.test/", headers=alice.auth).status_code == 200  # reading is not a check


def test_the_web_ui_shows_a_flash_message_once_the_checks_are_used_up(limited, world_for) -> None:
    web = WebClient(limited.test_client())
    world = world_for(web.client)
    owner = world.owner()
    web.sign_in(owner.email)
    resp = web.post("/admin/domains/", {"domain": "web.test"})  # adding looks at DNS once: one check
    assert resp.status_code == 303, text_of(resp)
    for _ in range(LIMIT - 1):
        page = web.post("/admin/domains/web.test/verify/", follow_redirects=True)
        assert "DNS checks" not in text_of(page)
    page = web.post("/admin/domains/web.test/verify/", follow_redirects=True)
    assert page.status_code == 200
    assert f"At most {LIMIT} DNS checks per hour" in text_of(page)
    resp = web.client.post("/v1/domains/web.test/verify/", headers=owner.auth)  # the same count as the API's
    assert resp.status_code == 429
