"""Shares of cards between inboxes (issue 17 point 5): offers and requests inside one tenant,
accept copies the card (a conditional update: two concurrent accepts make one contact), expiry,
the `contact.share_received` event and the receiving side's pending agenda item."""
from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import func, select

from appliance import clock
from appliance.models import Contact, ContactShare, Event
from appliance.services.workspace import contact_shares, contacts
from tests.helpers import assert_error

SCOPES = ["contacts:read", "contacts:write"]


def _two_inboxes(world):  # noqa: ANN001, ANN202
    owner = world.owner()
    return owner, world.agent(owner, world.inbox(owner), SCOPES), world.agent(owner, world.inbox(owner), SCOPES)


def _card(client, agent) -> str:  # noqa: ANN001
    resp = client.post("/v1/contacts/", json={"full_name": "Carol Shared", "emails": [{"address": "carol@remote.test"}],
                                              "phones": [{"label": "cell", "number": "+1 555 0100"}],
                                              "labels": ["mine"], "notes": "private notes"}, headers=agent.auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["contact_id"]


def _offer(client, sender, receiver, contact_id: str, **extra):  # noqa: ANN001, ANN202
    return client.post("/v1/contacts/shares/", json={"type": "offer", "to_inbox_id": receiver.inbox_id,
                                                     "contact_id": contact_id, **extra}, headers=sender.auth)


def test_an_offer_is_received_listed_on_the_agenda_and_accepting_copies_the_card(client, world, store):
    _owner, a, b = _two_inboxes(world)
    cid = _card(client, a)
    resp = _offer(client, a, b, cid, note="you will need her", labels=["from-a"])
    assert resp.status_code == 201, resp.get_json()
    share = resp.get_json()
    assert share["status"] == "pending" and share["share_id"].startswith("shr_")
    assert (share["from_inbox_id"], share["to_inbox_id"], share["contact_address"]) == (a.inbox_id, b.inbox_id,
                                                                                        "carol@remote.test")
    with store.session() as db:
        [event] = db.scalars(select(Event).where(Event.type == "contact.share_received")).all()
        assert (event.inbox_id, event.resource_id) == (b.inbox_id, share["share_id"])
        [item] = contacts.pending_agenda_items(db, b.inbox_id)
        assert item["kind"] == "share" and item["id"] == share["share_id"] and item["pending"] and item["at"] is None
        assert "Carol Shared" in item["title"] and contacts.pending_agenda_items(db, a.inbox_id) == []
    assert [s["share_id"] for s in client.get("/v1/contacts/shares/", headers=b.auth).get_json()["results"]] == \
        [share["share_id"]]
    assert_error(client.post(f"/v1/contacts/shares/{share['share_id']}/accept/", headers=a.auth), 404, "not_found")
    accepted = client.post(f"/v1/contacts/shares/{share['share_id']}/accept/", headers=b.auth)
    assert accepted.status_code == 200, accepted.get_json()
    body = accepted.get_json()
    assert body["status"] == "accepted" and body["resolved_at"]
    copy = client.get(f"/v1/contacts/{body['result_contact_id']}/", headers=b.auth).get_json()
    assert copy["full_name"] == "Carol Shared" and copy["emails"][0]["address"] == "carol@remote.test"
    assert copy["phones"] == [{"label": "cell", "number": "+1 555 0100"}]
    assert copy["labels"] == ["from-a"] and copy["notes"] == "" and copy["source"] == "share"
    assert copy["relationship"]["introduced_by"] == a.inbox_id
    assert_error(client.post(f"/v1/contacts/shares/{share['share_id']}/decline/", headers=b.auth), 409, "conflict")
    with store.session() as db:
        assert contacts.pending_agenda_items(db, b.inbox_id) == []


def test_a_request_is_answered_with_the_receivers_card(client, world):
    _owner, a, b = _two_inboxes(world)
    _card(client, b)
    resp = client.post("/v1/contacts/shares/", json={"type": "request", "to_inbox_id": b.inbox_id,
                                                     "contact_address": "Carol@REMOTE.test", "note": "please"},
                       headers=a.auth)
    assert resp.status_code == 201, resp.get_json()
    done = client.post(f"/v1/contacts/shares/{resp.get_json()['share_id']}/accept/", headers=b.auth).get_json()
    copy = client.get(f"/v1/contacts/{done['result_contact_id']}/", headers=a.auth).get_json()
    assert copy["inbox_id"] == a.inbox_id and copy["full_name"] == "Carol Shared"


def test_shares_across_tenants_are_refused(client, world):
    _owner, a, _b = _two_inboxes(world)
    cid = _card(client, a)
    stranger = world.owner()
    theirs = world.agent(stranger, world.inbox(stranger), SCOPES)
    assert_error(_offer(client, a, theirs, cid), 404, "not_found", "to_inbox_id")
    assert_error(client.post("/v1/contacts/shares/", json={"type": "request", "to_inbox_id": a.inbox_id,
                                                           "contact_address": "carol@remote.test"},
                             headers=theirs.auth), 404, "not_found", "to_inbox_id")
    assert_error(_offer(client, theirs, a, cid), 404, "not_found")  # nor can they offer our card


def test_an_expired_offer_cannot_be_accepted_and_is_purged_after_seven_days(client, world, store):
    _owner, a, b = _two_inboxes(world)
    share_id = _offer(client, a, b, _card(client, a)).get_json()["share_id"]
    clock.advance(dt.timedelta(days=30, seconds=1))
    err = assert_error(client.post(f"/v1/contacts/shares/{share_id}/accept/", headers=b.auth), 409, "share_expired")
    assert "expired" in err["message"]
    with store.session() as db:
        assert contacts.pending_agenda_items(db, b.inbox_id) == []
        assert contact_shares.purge_shares(db) == 0  # now marked expired, kept 7 more days
        assert db.get(ContactShare, share_id).status == "expired"
    clock.advance(dt.timedelta(days=7, seconds=1))
    with store.session() as db:
        assert contact_shares.purge_shares(db) == 1 and db.get(ContactShare, share_id) is None


def test_two_concurrent_accepts_make_one_contact(app, world, store):
    _owner, a, b = _two_inboxes(world)
    client = app.test_client()
    share_id = _offer(client, a, b, _card(client, a)).get_json()["share_id"]
    barrier, answers = threading.Barrier(2), []

    def accept() -> None:
        own = app.test_client()
        barrier.wait(timeout=30)
        answers.append(own.post(f"/v1/contacts/shares/{share_id}/accept/", headers=b.auth).status_code)

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == [200, 409]
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Contact).where(Contact.inbox_id == b.inbox_id)) == 1
