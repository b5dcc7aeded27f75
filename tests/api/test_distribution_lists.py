"""Issue 16.5, distribution lists over the API (contract section 10): owner/admin sessions create
a list on a verified domain, add and remove member inboxes of their tenant; an address taken by an
inbox or another list is 409; another tenant's list is 404 and its inboxes are never members.
Delivery of a list's mail is tested over real SMTP in tests/integration/test_distribution_lists.py.
Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

from appliance.services.mail import inbound
from tests.helpers import assert_error

LISTS = "/v1/distribution-lists/"


def _make(client, who, address: str, name: str = "Team"):
    return client.post(LISTS, json={"address": address, "name": name}, headers=who.auth)


def test_an_owner_creates_a_list_and_manages_its_members(client, world):
    owner = world.owner()
    a, b = world.inbox(owner, "ann@alpha.test"), world.inbox(owner, "bob@alpha.test")
    made = _make(client, owner, "Team@Alpha.test")
    assert made.status_code == 201, made.get_data(as_text=True)
    dl = made.json
    assert dl["address"] == "team@alpha.test" and dl["name"] == "Team" and dl["members"] == []
    assert dl["list_id"].startswith("dl_") and dl["list_id_header"] == "<team.alpha.test>"
    for inbox_id in (a, b):
        added = client.post(f"{LISTS}{dl['list_id']}/members/", json={"inbox_id": inbox_id}, headers=owner.auth)
        assert added.status_code == 201, added.get_data(as_text=True)
    got = client.get(f"{LISTS}{dl['list_id']}/", headers=owner.auth).json
    assert [m["address"] for m in got["members"]] == ["ann@alpha.test", "bob@alpha.test"]
    assert_error(client.post(f"{LISTS}{dl['list_id']}/members/", json={"inbox_id": a}, headers=owner.auth),
                 409, "conflict", field="inbox_id")
    assert client.delete(f"{LISTS}{dl['list_id']}/members/{a}/", headers=owner.auth).status_code == 204
    assert_error(client.delete(f"{LISTS}{dl['list_id']}/members/{a}/", headers=owner.auth), 404, "not_found")
    assert [m["inbox_id"] for m in client.get(LISTS, headers=owner.auth).json["results"][0]["members"]] == [b]
    # The listener accepts the list's address at RCPT time, as the list.
    with world.store.session() as db:
        assert inbound.check_recipient(db, "team@alpha.test").list_id == dl["list_id"]
    assert client.delete(f"{LISTS}{dl['list_id']}/", headers=owner.auth).status_code == 204
    assert client.get(LISTS, headers=owner.auth).json["results"] == []
    with world.store.session() as db:
        assert inbound.check_recipient(db, "team@alpha.test").code == 550


def test_a_taken_address_is_a_conflict_both_ways(client, world):
    owner = world.owner()
    world.inbox(owner, "ann@alpha.test")
    assert_error(_make(client, owner, "ann@alpha.test"), 409, "conflict", field="address")
    assert _make(client, owner, "team@alpha.test").status_code == 201
    assert_error(_make(client, owner, "team@alpha.test"), 409, "conflict", field="address")
    # An inbox cannot take a list's address either.
    assert_error(client.post("/v1/inboxes/", json={"address": "team@alpha.test"}, headers=owner.auth),
                 409, "conflict", field="address")


def test_a_list_lives_on_a_verified_domain_of_the_tenant(client, world):
    owner, other = world.owner(), world.owner()
    world.inbox(other, "x@beta.test")
    assert_error(_make(client, owner, "team@beta.test"), 400, "domain_not_verified", field="address")
    assert_error(_make(client, owner, "team@nowhere.test"), 400, "domain_not_verified", field="address")
    assert_error(_make(client, owner, "not an address"), 400, "validation_error")


def test_another_tenants_list_is_not_found_and_its_inboxes_are_never_members(client, world):
    owner, other = world.owner(), world.owner()
    mine = world.inbox(owner, "ann@alpha.test")
    theirs = world.inbox(other, "eve@beta.test")
    dl = _make(client, owner, "team@alpha.test").json["list_id"]
    their_list = _make(client, other, "crew@beta.test").json["list_id"]
    for method, path, body in (("get", f"{LISTS}{their_list}/", None), ("delete", f"{LISTS}{their_list}/", None),
                               ("post", f"{LISTS}{their_list}/members/", {"inbox_id": mine}),
                               ("delete", f"{LISTS}{their_list}/members/{theirs}/", None)):
        assert_error(getattr(client, method)(path, json=body, headers=owner.auth), 404, "not_found")
    assert [r["list_id"] for r in client.get(LISTS, headers=owner.auth).json["results"]] == [dl]
    # An inbox of another tenant is refused as a member, as is an id that names nothing.
    for inbox_id in (theirs, "inb_nothing", dl):
        assert_error(client.post(f"{LISTS}{dl}/members/", json={"inbox_id": inbox_id}, headers=owner.auth),
                     400, "validation_error", field="inbox_id")
    assert client.get(f"{LISTS}{their_list}/", headers=other.auth).status_code == 200


def test_only_owners_and_admins_manage_lists(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner, "ann@alpha.test")
    member, admin = world.member(owner), world.member(owner, "admin")
    assert_error(_make(client, member, "team@alpha.test"), 403, "forbidden")
    assert_error(client.get(LISTS, headers=member.auth), 403, "forbidden")
    agent = world.agent(owner, inbox_id, ["email:read"])
    assert client.get(LISTS, headers=agent.auth).status_code in (401, 403)
    assert _make(client, admin, "team@alpha.test").status_code == 201


def test_a_hosted_sender_reaches_every_member_through_local_delivery(client, world, store, settings):
    """Mail from an inbox of this box to a list here: the worker's local delivery expands it."""
    from sqlalchemy import select

    from appliance.models import Message
    from tests.api.test_send import receiving_box, sending_box, sent_ok
    from appliance.worker import Worker

    alice = sending_box(world, world.owner(), "sales@alpha.test")
    owner = world.owner()
    members = [receiving_box(world, owner, f"{name}@beta.test").inbox_id for name in ("ann", "bob")]
    dl = _make(client, owner, "team@beta.test").json["list_id"]
    for inbox_id in members:
        client.post(f"{LISTS}{dl}/members/", json={"inbox_id": inbox_id}, headers=owner.auth)
    answer = sent_ok(client, alice.agent.auth, to=[{"email": "team@beta.test"}], subject="Hi team", text_body="Hi.")
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    sent = client.get(f"/v1/messages/{answer['message_id']}/", headers=alice.agent.auth).json
    assert [d["status"] for d in sent["delivery"]] == ["delivered"]
    with store.session() as db:
        copies = db.execute(select(Message.inbox_id, Message.subject).where(Message.direction == "inbound")).all()
    assert sorted(copies) == sorted((i, "Hi team") for i in members)


def test_a_member_sees_a_lists_mail_only_in_the_inboxes_granted_to_them(client, world, store):
    """Point 6 over the API: a member's session sees exactly the granted inboxes, list copies included."""
    from tests.api.test_messages import build_mail

    owner = world.owner()
    sales, ops = world.inbox(owner, "sales@alpha.test"), world.inbox(owner, "ops@alpha.test")
    dl = _make(client, owner, "team@alpha.test").json["list_id"]
    for inbox_id in (sales, ops):
        client.post(f"{LISTS}{dl}/members/", json={"inbox_id": inbox_id}, headers=owner.auth)
    member = world.member(owner)
    assert client.put(f"/v1/inboxes/{sales}/members/", json={"user_ids": [member.user_id]},
                      headers=owner.auth).status_code == 200
    with store.session() as db:
        copies = inbound.receive(db, inbox_ids=[], raw=build_mail(subject="To the team", to="team@alpha.test"),
                                 envelope_from="a@sender.example", envelope_to={}, lists={dl: "team@alpha.test"})
    assert sorted(c.inbox_id for c in copies) == sorted([sales, ops])
    assert [i["inbox_id"] for i in client.get("/v1/inboxes/", headers=member.auth).json["results"]] == [sales]
    mine = client.get("/v1/messages/", query_string={"inbox_id": sales}, headers=member.auth)
    assert [m["subject"] for m in mine.json["results"]] == ["To the team"]
    assert_error(client.get("/v1/messages/", query_string={"inbox_id": ops}, headers=member.auth), 404, "not_found")
    other = next(c.id for c in copies if c.inbox_id == ops)
    assert_error(client.get(f"/v1/messages/{other}/", query_string={"inbox_id": sales}, headers=member.auth),
                 404, "not_found")
