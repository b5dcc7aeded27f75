"""Webhook targets that point inside (issue 15: SSRF): refused at every attempt, before any
connection, with webhook_allow_private off (the default); redirects are never followed."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from appliance.dns import Resolver
from appliance.models import WebhookDelivery
from appliance.services.automation import dispatch, events, webhooks
from tests.integration.webhook_receiver import Receiver, make_alert


@pytest.fixture
def listener():
    receiver = Receiver([])  # counts every TCP connection it accepts
    yield receiver
    receiver.stop()


def deliver_one(world, store, settings, target: str) -> WebhookDelivery:  # noqa: ANN001
    """An alert on target, one event, one delivery pass; the delivery row afterwards."""
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with store.session() as db:
        alert, _ = make_alert(db, settings, tenant_id=owner.tenant_id, inbox_id=inbox_id, target=target,
                              events=["message.received"])
        alert_id = alert.id
    with store.session() as db:
        events.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox_id, payload={})
    hooks = dispatch.Dispatcher(store, settings, Resolver(settings), name="ssrf-test")
    hooks.run_until_idle()
    hooks.close()
    with store.session() as db:
        found = db.scalar(select(WebhookDelivery).where(WebhookDelivery.alert_id == alert_id))
        db.expunge(found)
        return found


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"])
def test_targets_on_internal_addresses_are_refused(world, store, settings, listener, host: str) -> None:
    port = listener.port if host in ("127.0.0.1", "[::ffff:127.0.0.1]") else 443
    found = deliver_one(world, store, settings, f"https://{host}:{port}/hook")
    assert found.status == "failed" and found.response_status is None
    assert "non-public address" in found.error
    assert listener.connections == 0


def test_a_name_that_turns_private_after_creation_is_refused(world, store, make_settings, make_store,
                                                            dns_server, listener) -> None:
    """DNS rebinding: public when the alert was made, loopback when the webhook is sent."""
    settings = make_settings(dns_servers=dns_server.address)
    store = make_store(settings)
    dns_server.publish("hooks.rebind.example", "A", "93.184.216.34")
    target = f"https://hooks.rebind.example:{listener.port}/hook"
    parsed, ip = webhooks.resolve_target(settings, Resolver(settings), target)  # the create-time check
    assert ip == "93.184.216.34"
    dns_server.remove("hooks.rebind.example", restart=False)
    dns_server.publish("hooks.rebind.example", "A", "127.0.0.1")
    found = deliver_one(world, store, settings, target)
    assert found.status == "failed" and "non-public address (127.0.0.1)" in found.error
    assert listener.connections == 0


def test_one_private_address_among_public_ones_is_enough_to_refuse(make_settings, dns_server) -> None:
    settings = make_settings(dns_servers=dns_server.address)
    dns_server.publish("mixed.rebind.example", "A", "93.184.216.34", restart=False)
    dns_server.publish("mixed.rebind.example", "AAAA", "::1")
    with pytest.raises(webhooks.TargetRefused, match="::1"):
        webhooks.resolve_target(settings, Resolver(settings), "https://mixed.rebind.example/")


def test_plain_http_is_refused_without_the_setting(settings) -> None:
    with pytest.raises(webhooks.TargetRefused, match="https"):
        webhooks.resolve_target(settings, Resolver(settings), "http://93.184.216.34/")


def test_a_redirect_is_a_failure_and_is_not_followed(world, make_settings, make_store, listener) -> None:
    """Even where private targets are allowed (so the first hop can be on loopback here), a 302
    is never followed: the second listener is never dialled."""
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    redirector = Receiver([], lambda n, hit: (302, {"Location": f"http://127.0.0.1:{listener.port}/"}, 0.0))
    try:
        found = deliver_one(world, store, settings, redirector.url)
    finally:
        redirector.stop()
    assert (found.status, found.response_status) == ("failed", 302)
    assert "redirects are not followed" in found.error
    assert listener.connections == 0
