"""Issue 16 point 1, labels (contract section 9): the /v1/labels/ resource with its counts, names
unique per inbox, rename and delete reaching the messages, message label writes creating labels
and emitting label.applied / label.removed, `label=` filters by name or id, and tenancy.
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest

from tests.api.test_messages import build_mail, deliver
from tests.helpers import assert_error

NO_LABEL = "lbl_01J00000000000000000000000"


@pytest.fixture
def box(world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["labels:read", "labels:write", "email:read", "email:write"])
    return owner, inbox_id, agent


def _label(client, auth, **fields):
    resp = client.post("/v1/labels/", json=fields, headers=auth)
    assert resp.status_code == 201, resp.json
    return resp.json


def _set(client, auth, message_id, names):
    resp = client.patch(f"/v1/messages/{message_id}/", json={"labels": names}, headers=auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def _events(client, auth, types):
    resp = client.get("/v1/events/", query_string={"types": ",".join(types)}, headers=auth)
    assert resp.status_code == 200, resp.json
    return [(e["type"], e["resource_id"], e["payload"]) for e in resp.json["results"]]


def test_crud_with_counts_and_a_duplicate_name_refused(client, box, world):
    owner, inbox_id, agent = box
    made = _label(client, agent.auth, name="VIP", color="#1F6FEB", type="message")
    assert made["label_id"].startswith("lbl_") and made["inbox_id"] == inbox_id
    assert (made["name"], made["color"], made["type"], made["message_count"], made["contact_count"]) == \
        ("VIP", "#1f6feb", "message", 0, 0)
    assert_error(client.post("/v1/labels/", json={"name": "VIP"}, headers=agent.auth), 409, "conflict", "name")
    assert_error(client.post("/v1/labels/", json={"name": "x", "color": "blue"}, headers=agent.auth),
                 400, "validation_error")
    m1 = deliver(world, inbox_id, build_mail(subject="one"))
    m2 = deliver(world, inbox_id, build_mail(subject="two"))
    _set(client, agent.auth, m1, ["VIP", "later"])
    _set(client, agent.auth, m2, ["VIP"])
    listed = client.get("/v1/labels/", headers=agent.auth).json
    assert {(r["name"], r["message_count"], r["type"]) for r in listed["results"]} == \
        {("VIP", 2, "message"), ("later", 1, "message")}  # the unknown name became a message label
    one = client.get(f"/v1/labels/{made['label_id']}/", query_string={"inbox_id": inbox_id}, headers=owner.auth)
    assert one.status_code == 200 and one.json["message_count"] == 2
    by_session = client.get("/v1/labels/", query_string={"inbox_id": inbox_id}, headers=owner.auth)
    assert len(by_session.json["results"]) == 2


def test_rename_follows_on_messages_and_delete_removes_the_name(client, box, world):
    owner, inbox_id, agent = box
    m1 = deliver(world, inbox_id, build_mail(subject="one"))
    _set(client, agent.auth, m1, ["urgent", "keep"])
    label_id = next(r["label_id"] for r in client.get("/v1/labels/", headers=agent.auth).json["results"]
                    if r["name"] == "urgent")
    keep_id = next(r["label_id"] for r in client.get("/v1/labels/", headers=agent.auth).json["results"]
                   if r["name"] == "keep")
    assert_error(client.patch(f"/v1/labels/{label_id}/", json={"name": "keep"}, headers=agent.auth), 409, "conflict")
    renamed = client.patch(f"/v1/labels/{label_id}/", json={"name": "now", "color": "#ff0000"}, headers=agent.auth)
    assert renamed.status_code == 200 and renamed.json["name"] == "now" and renamed.json["message_count"] == 1
    assert client.get(f"/v1/messages/{m1}/", headers=agent.auth).json["labels"] == ["now", "keep"]
    assert client.delete(f"/v1/labels/{keep_id}/", headers=agent.auth).status_code == 204
    assert client.get(f"/v1/messages/{m1}/", headers=agent.auth).json["labels"] == ["now"]
    assert_error(client.get(f"/v1/labels/{keep_id}/", headers=agent.auth), 404, "not_found")
    kinds = [t for t, _, _ in _events(client, agent.auth, ["label.updated", "label.deleted"])]
    assert kinds == ["label.updated", "label.deleted"]


def test_message_label_writes_emit_applied_and_removed_per_change(client, box, world):
    owner, inbox_id, agent = box
    message_id = deliver(world, inbox_id, build_mail())
    _set(client, agent.auth, message_id, ["a", "b"])
    _set(client, agent.auth, message_id, ["b", "c"])
    _set(client, agent.auth, message_id, ["b", "c"])  # no change, no event
    seen = _events(client, agent.auth, ["label.applied", "label.removed"])
    assert [(t, p["label"]) for t, _, p in seen] == [
        ("label.applied", "a"), ("label.applied", "b"), ("label.applied", "c"), ("label.removed", "a")]
    assert {r for _, r, _ in seen} == {message_id}
    assert all(p["label_id"].startswith("lbl_") for _, _, p in seen)


def test_a_contact_label_cannot_tag_a_message(client, box, world):
    owner, inbox_id, agent = box
    _label(client, agent.auth, name="customers", type="contact")
    message_id = deliver(world, inbox_id, build_mail())
    assert_error(client.patch(f"/v1/messages/{message_id}/", json={"labels": ["customers"]}, headers=agent.auth),
                 400, "label_type_mismatch")


def test_the_label_filter_takes_a_name_or_an_id(client, box, world):
    owner, inbox_id, agent = box
    tagged = deliver(world, inbox_id, build_mail(subject="tagged"))
    deliver(world, inbox_id, build_mail(subject="other"))
    _set(client, agent.auth, tagged, ["invoices"])
    label_id = client.get("/v1/labels/", headers=agent.auth).json["results"][0]["label_id"]
    for value in ("invoices", label_id):
        found = client.get("/v1/messages/", query_string={"label": value}, headers=agent.auth).json["results"]
        assert [m["message_id"] for m in found] == [tagged]


def test_labels_of_another_tenant_or_inbox_are_404(client, box, world):
    owner, inbox_id, agent = box
    label = _label(client, agent.auth, name="mine")
    other = world.owner()
    other_inbox = world.inbox(other)
    stranger = world.agent(other, other_inbox, ["labels:read", "labels:write"])
    for resp in (client.get(f"/v1/labels/{label['label_id']}/", headers=stranger.auth),
                 client.patch(f"/v1/labels/{label['label_id']}/", json={"name": "x"}, headers=stranger.auth),
                 client.delete(f"/v1/labels/{label['label_id']}/", headers=stranger.auth),
                 client.get(f"/v1/labels/{label['label_id']}/", query_string={"inbox_id": inbox_id},
                            headers=other.auth),
                 client.get(f"/v1/labels/{NO_LABEL}/", headers=agent.auth)):
        assert_error(resp, 404, "not_found")
    assert client.get("/v1/labels/", headers=stranger.auth).json["results"] == []
    reader = world.agent(owner, inbox_id, ["labels:read"])
    assert_error(client.post("/v1/labels/", json={"name": "y"}, headers=reader.auth), 403, "insufficient_scope")


def test_a_label_on_messages_cannot_become_contact_only(client, box, world):
    owner, inbox_id, agent = box
    message_id = deliver(world, inbox_id, build_mail())
    _set(client, agent.auth, message_id, ["team"])
    label_id = client.get("/v1/labels/", headers=agent.auth).json["results"][0]["label_id"]
    assert_error(client.patch(f"/v1/labels/{label_id}/", json={"type": "contact"}, headers=agent.auth),
                 409, "conflict", "type")
    assert client.patch(f"/v1/labels/{label_id}/", json={"type": "any"}, headers=agent.auth).json["type"] == "any"
