"""End to end (issue 15): an alert made through the API, a real message event and a test
delivery reach a loopback receiver signed with the secret the API showed; the delivery log shows
them; after rotate-secret both secrets verify."""
from __future__ import annotations

from appliance.dns import Resolver
from appliance.services.automation import dispatch, events
from tests.integration.webhook_receiver import Receiver


def test_an_alert_made_through_the_api_receives_signed_events(make_settings, make_app, world_for) -> None:
    receiver = Receiver([])
    client = make_app(make_settings(webhook_allow_private=True)).test_client()
    world = world_for(client)
    store, settings = world.store, world.settings
    hooks = dispatch.Dispatcher(store, settings, Resolver(settings), name="api-flow")
    try:
        owner = world.owner()
        inbox_id = world.inbox(owner)
        agent = world.agent(owner, inbox_id, ["alerts:read", "alerts:write"])
        made = client.post("/v1/alerts/", json={"events": ["message.received"],
                                                "delivery": {"type": "webhook", "target": receiver.url}},
                           headers=agent.auth)
        assert made.status_code == 201, made.json
        alert_id = made.json["alert_id"]
        receiver.secrets.append(made.json["secret"])
        with store.session() as db:
            event_id = events.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                   payload={"subject": "hi"}).id
        assert client.post(f"/v1/alerts/{alert_id}/test/", headers=agent.auth).status_code == 202
        hooks.run_until_idle()
        types = sorted(h.body.decode().split('"type":"')[1].split('"')[0] for h in receiver.hits)
        assert types == ["message.received", "webhook.test"] and all(h.verified for h in receiver.hits)
        log = client.get(f"/v1/alerts/{alert_id}/deliveries/", headers=agent.auth).json["results"]
        assert sorted((d["event_id"] == event_id, d["status"], d["response_status"]) for d in log) == [
            (False, "succeeded", 200), (True, "succeeded", 200)]
        rotated = client.post(f"/v1/alerts/{alert_id}/rotate-secret/", headers=agent.auth)
        assert rotated.status_code == 200, rotated.json
        receiver.secrets.append(rotated.json["secret"])  # the old and the new must both verify now
        assert client.post(f"/v1/alerts/{alert_id}/test/", headers=agent.auth).status_code == 202
        hooks.run_until_idle()
        assert len(receiver.hits) == 3 and receiver.hits[2].verified
    finally:
        hooks.close()
        receiver.stop()
