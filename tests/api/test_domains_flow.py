"""The owner's path through contract sections 2 and 3 against a real DNS server."""
from __future__ import annotations

import pytest


@pytest.fixture
def dns_client(make_app, make_settings, dns_server):
    app = make_app(make_settings(dns_servers=dns_server.address, dns_timeout=2.0))
    return app.test_client()


def test_domain_is_verified_once_every_record_is_published(dns_client, dns_server, world_for):
    world = world_for(dns_client)
    owner = world.owner()
    created = dns_client.post("/v1/domains/", json={"domain": "Example.TEST"}, headers=owner.auth)
    assert created.status_code == 201, created.json
    assert created.json["domain"] == "example.test"
    purposes = [r["purpose"] for r in created.json["dns_records"]]
    assert purposes == ["mx", "spf", "dkim", "dkim", "dmarc", "verification", "mta_sts", "tls_rpt"]  # RSA, Ed25519
    assert sum(r["required"] for r in created.json["dns_records"]) == 5

    verified = dns_client.post("/v1/domains/example.test/verify/", headers=owner.auth)
    assert verified.status_code == 200
    assert verified.json["status"] == "pending"
    assert {r["status"] for r in verified.json["dns_records"]} == {"missing"}
    assert dns_client.get("/v1/users/me/", headers=owner.auth).json["next_step"]["code"] == "verify_domain"

    dns_server.publish_domain_records("example.test", created.json["dns_records"])
    verified = dns_client.post("/v1/domains/example.test/verify/", headers=owner.auth)
    assert verified.json["status"] == "verified", verified.json
    assert dns_client.get("/v1/users/me/", headers=owner.auth).json["next_step"]["code"] == "create_inbox"

    inbox = dns_client.post("/v1/inboxes/", json={"address": "Agent@example.test", "display_name": "Agent"},
                            headers=owner.auth)
    assert inbox.status_code == 201, inbox.json
    assert inbox.json["address"] == "agent@example.test"
    assert dns_client.get("/v1/users/me/", headers=owner.auth).json["next_step"]["code"] == "create_token"
