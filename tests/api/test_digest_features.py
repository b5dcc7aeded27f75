"""Issue 21 leftover: digests are gated by the inbox's `enabled_features` like phishing_detection
and next_step (on by default; left out, the digest answers 403 feature_disabled)."""
from __future__ import annotations

from appliance.models import Message
from tests.api.test_digests import FIRST, SECOND, SCOPES, _receive
from tests.helpers import assert_error


def test_digests_follow_enabled_features(client, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, SCOPES)
    first = _receive(store, inbox_id, FIRST.format(due="December 18, 2030"))
    _receive(store, inbox_id, SECOND)
    with store.session() as db:
        thread_id = db.get(Message, first).thread_id
    contact = client.post("/v1/contacts/", headers=agent.auth,
                          json={"full_name": "Alice Park", "emails": [{"address": "alice@partner.example"}]})
    assert contact.status_code == 201, contact.json
    thread_path = f"/v1/messages/threads/{thread_id}/digest/"
    contact_path = f"/v1/contacts/{contact.json['contact_id']}/digest/"
    assert client.get(thread_path, headers=agent.auth).status_code == 200  # the defaults list both
    assert client.get(contact_path, headers=agent.auth).status_code == 200

    def enable(*features: str) -> None:
        resp = client.put("/v1/enrichment/", headers=owner.auth,
                          json={"inbox_id": inbox_id, "enabled_features": list(features)})
        assert resp.status_code == 200, resp.json

    enable("phishing_detection", "next_step")
    err = assert_error(client.get(thread_path, headers=agent.auth), 403, "feature_disabled")
    assert "thread_digest" in err["message"] and "PUT /v1/enrichment/" in err["fix"]
    assert_error(client.get(contact_path, headers=agent.auth), 403, "feature_disabled")
    enable("thread_digest")
    assert client.get(thread_path, headers=agent.auth).status_code == 200
    assert_error(client.get(contact_path, headers=agent.auth), 403, "feature_disabled")
