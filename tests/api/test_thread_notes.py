"""Issue 16 point 3 through the API (contract section 10): thread notes (90-day expiry on the
injected clock, author-only delete, mentions of teammates becoming pending agenda items, an
address outside the tenant refused) and assignment (same tenant only, `thread.assigned`, the
assignee's agent reads and replies in the thread until the assignment is revoked).
Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.models import Message, ThreadNote
from appliance.services.team import notes
from tests.api.test_messages import build_mail, deliver
from tests.api.test_send import parsed, raw_of, sending_box
from tests.helpers import assert_error

SCOPES = ["email:read", "email:write", "email:send"]


@pytest.fixture
def team(world):
    """Two inboxes of one tenant (support@ receives a thread, alice@ is a teammate), each with an agent."""
    owner = world.owner()
    support = sending_box(world, owner, "support@team.test")
    alice_inbox = world.inbox(owner, "alice@team.test")
    alice = world.agent(owner, alice_inbox, SCOPES)
    support_agent = world.agent(owner, support.inbox_id, SCOPES)
    message_id = deliver(world, support.inbox_id, build_mail(subject="Broken printer", to="support@team.test"))
    with world.store.session() as db:
        thread_id = db.get(Message, message_id).thread_id
    return owner, support.inbox_id, support_agent, alice_inbox, alice, message_id, thread_id


def _note(client, auth, thread_id, body="Customer is a VIP", mentions=()):
    return client.post(f"/v1/messages/threads/{thread_id}/notes/", json={"body": body, "mentions": list(mentions)},
                       headers=auth)


def test_notes_are_listed_expire_after_90_days_and_only_the_author_deletes(client, world, team):
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    made = _note(client, agent.auth, thread_id)
    assert made.status_code == 201, made.json
    note = made.json
    assert note["note_id"].startswith("not_") and note["author_inbox_id"] == support
    listed = client.get(f"/v1/messages/threads/{thread_id}/notes/", headers=agent.auth).json["results"]
    assert [n["note_id"] for n in listed] == [note["note_id"]]
    other_agent = world.agent(owner, support, SCOPES)  # same inbox, another author
    assert_error(client.delete(f"/v1/messages/threads/{thread_id}/notes/{note['note_id']}/", headers=other_agent.auth),
                 403, "forbidden")
    assert_error(client.delete(f"/v1/messages/threads/{thread_id}/notes/{note['note_id']}/",
                               query_string={"inbox_id": support}, headers=owner.auth), 403, "forbidden")
    assert client.delete(f"/v1/messages/threads/{thread_id}/notes/{note['note_id']}/",
                         headers=agent.auth).status_code == 204
    assert client.get(f"/v1/messages/threads/{thread_id}/notes/", headers=agent.auth).json["results"] == []

    kept = _note(client, agent.auth, thread_id, body="Expires").json
    clock.advance(notes.NOTE_LIFETIME - dt.timedelta(minutes=1))
    assert [n["note_id"] for n in client.get(f"/v1/messages/threads/{thread_id}/notes/",
                                             headers=agent.auth).json["results"]] == [kept["note_id"]]
    clock.advance(dt.timedelta(minutes=2))
    assert client.get(f"/v1/messages/threads/{thread_id}/notes/", headers=agent.auth).json["results"] == []
    assert_error(client.delete(f"/v1/messages/threads/{thread_id}/notes/{kept['note_id']}/", headers=agent.auth),
                 404, "not_found")
    _note(client, agent.auth, thread_id, body="A later note purges the expired one")
    with world.store.session() as db:
        assert db.get(ThreadNote, kept["note_id"]) is None


def test_mentions_become_pending_agenda_items_and_outside_addresses_are_refused(client, world, team, store):
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    stranger = world.owner()
    world.inbox(stranger, "eve@evil.test")
    assert_error(_note(client, agent.auth, thread_id, mentions=["alice@team.test", "eve@evil.test"]),
                 400, "validation_error", "mentions[1]")
    assert_error(_note(client, agent.auth, thread_id, mentions=["nobody@team.test"]), 400, "validation_error")
    made = _note(client, agent.auth, thread_id, mentions=["Alice@team.test", "support@team.test"]).json
    assert made["mentions"] == ["Alice@team.test", "support@team.test"]
    with store.session() as db:
        mine = notes.pending_agenda_items(db, alice_inbox)
        assert notes.pending_agenda_items(db, support) == []  # the author is not reminded
    assert [(i["kind"], i["id"], i["pending"], i["at"]) for i in mine] == [("mention", made["note_id"], True, None)]
    assert mine[0]["resource"]["thread_id"] == thread_id and "Broken printer" in mine[0]["title"]


def test_assignment_lets_the_assignee_read_and_reply_until_revoked(client, world, team, store):
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    assert_error(client.get(f"/v1/messages/threads/{thread_id}/", headers=alice.auth), 404, "not_found")
    assigned = client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": alice_inbox},
                           headers=agent.auth)
    assert assigned.status_code == 200, assigned.json
    assert assigned.json["thread_id"] == thread_id and assigned.json["assignee_inbox_id"] == alice_inbox
    seen = client.get(f"/v1/messages/threads/{thread_id}/", headers=alice.auth)
    assert seen.status_code == 200 and seen.json["messages"][0]["message_id"] == message_id
    assert client.get(f"/v1/messages/{message_id}/", headers=alice.auth).status_code == 200
    assert client.get(f"/v1/messages/{message_id}/raw/", headers=alice.auth).status_code == 200
    assert _note(client, alice.auth, thread_id, body="On it").status_code == 201
    reply = client.post("/v1/messages/", json={"reply_to_message_id": message_id, "text_body": "Fixed."},
                        headers=alice.auth)
    assert reply.status_code == 201, reply.json
    assert reply.json["thread_id"] == thread_id
    sent = parsed(raw_of(client, agent.auth, reply.json["message_id"]))  # stored in support's thread
    assert sent["From"].addresses[0].addr_spec == "support@team.test" and sent["Subject"] == "Re: Broken printer"
    with store.session() as db:
        items = notes.pending_agenda_items(db, alice_inbox)
    assert [(i["kind"], i["resource"]["thread_id"]) for i in items] == [("assignment", thread_id)]
    events = client.get("/v1/events/", query_string={"types": "thread.assigned,thread.unassigned"},
                        headers=agent.auth).json["results"]
    assert [(e["type"], e["payload"]["assignee_inbox_id"]) for e in events] == [("thread.assigned", alice_inbox)]

    assert client.delete(f"/v1/messages/threads/{thread_id}/assign/", headers=agent.auth).status_code == 204
    assert_error(client.get(f"/v1/messages/threads/{thread_id}/", headers=alice.auth), 404, "not_found")
    assert_error(client.get(f"/v1/messages/threads/{thread_id}/notes/", headers=alice.auth), 404, "not_found")
    assert_error(client.get(f"/v1/messages/{message_id}/", headers=alice.auth), 404, "not_found")
    refused = client.post("/v1/messages/", json={"reply_to_message_id": message_id, "text_body": "Again."},
                          headers=alice.auth)
    assert_error(refused, 404, "not_found", "reply_to_message_id")
    with store.session() as db:
        assert notes.pending_agenda_items(db, alice_inbox) == []  # the assignment's item went with it


def test_an_assignee_outside_the_tenant_is_refused(client, world, team):
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    stranger = world.owner()
    foreign = world.inbox(stranger)
    for assignee in (foreign, "inb_01J00000000000000000000000"):
        assert_error(client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": assignee},
                                 headers=agent.auth), 400, "validation_error", "assignee_inbox_id")
    # The assignee may not reassign or revoke: only the thread's own inbox does.
    assert client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": alice_inbox},
                       headers=agent.auth).status_code == 200
    assert_error(client.delete(f"/v1/messages/threads/{thread_id}/assign/", headers=alice.auth), 404, "not_found")
    assert_error(client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": support},
                             headers=alice.auth), 404, "not_found")
    assert client.get(f"/v1/messages/threads/{thread_id}/", headers=alice.auth).status_code == 200  # still hers


def test_another_tenants_notes_and_threads_are_404(client, world, team):
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    note = _note(client, agent.auth, thread_id).json
    stranger = world.owner()
    other_inbox = world.inbox(stranger)
    other_agent = world.agent(stranger, other_inbox, SCOPES)
    for auth, inbox_id in ((other_agent.auth, None), (stranger.auth, other_inbox)):
        query = {"inbox_id": inbox_id} if inbox_id else {}
        body = {"inbox_id": inbox_id} if inbox_id else {}
        assert_error(client.get(f"/v1/messages/threads/{thread_id}/notes/", query_string=query, headers=auth),
                     404, "not_found")
        assert_error(client.post(f"/v1/messages/threads/{thread_id}/notes/", json={**body, "body": "x"},
                                 headers=auth), 404, "not_found")
        assert_error(client.delete(f"/v1/messages/threads/{thread_id}/notes/{note['note_id']}/", query_string=query,
                                   headers=auth), 404, "not_found")
        assert_error(client.post(f"/v1/messages/threads/{thread_id}/assign/",
                                 json={**body, "assignee_inbox_id": other_inbox}, headers=auth), 404, "not_found")
    assert_error(client.get(f"/v1/messages/threads/{thread_id}/notes/", query_string={"inbox_id": support},
                            headers=stranger.auth), 404, "not_found")


def test_a_mention_and_an_assignment_show_in_the_mentioned_inboxs_agenda(client, world, team):
    """The notes area's pending items reach GET /v1/agenda/ through register_handlers()."""
    owner, support, agent, alice_inbox, alice, message_id, thread_id = team
    note = _note(client, agent.auth, thread_id, mentions=["alice@team.test"]).json
    assert client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": alice_inbox},
                       headers=agent.auth).status_code == 200
    reader = world.agent(owner, alice_inbox, ["task:read"])
    agenda = client.get("/v1/agenda/", headers=reader.auth)
    assert agenda.status_code == 200, agenda.json
    items = {(i["kind"], i["pending"]) for i in agenda.json["items"]}
    assert {("mention", True), ("assignment", True)} <= items
    assert note["note_id"] in {i["id"] for i in agenda.json["items"]}
