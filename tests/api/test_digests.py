"""Issue 21 point 4: thread and contact digests without a model (GET /v1/messages/threads/{id}/digest/,
GET /v1/contacts/{id}/digest/): key sentences from the writers' own words (quotes and signatures
cut off), the participants, the questions nobody answered yet, and the dates found by the
calendar's time parser; plus the next step stored per message."""
from __future__ import annotations

import datetime as dt

from appliance import clock
from appliance.models import Message
from appliance.services.intelligence import enrich
from appliance.services.mail import inbound

SCOPES = ["email:read", "contacts:read", "contacts:write"]
FIRST = ("From: Alice Park <alice@partner.example>\r\nTo: desk@x.example\r\nSubject: Venue for the launch\r\n"
         "Message-ID: <launch-1@partner.example>\r\nContent-Type: text/plain\r\n\r\n"
         "Hi team,\r\n\r\nThe launch venue is booked for the product launch. The venue holds 120 guests and the "
         "launch starts at six. Can you confirm the catering order for the launch by {due}?\r\n\r\n"
         "Best,\r\nAlice\r\n-- \r\nAlice Park, Events\r\n")
SECOND = ("From: Bob Stone <bob@partner.example>\r\nTo: desk@x.example\r\nSubject: Re: Venue for the launch\r\n"
          "Message-ID: <launch-2@partner.example>\r\nIn-Reply-To: <launch-1@partner.example>\r\n"
          "References: <launch-1@partner.example>\r\nContent-Type: text/plain\r\n\r\n"
          "The launch venue looks great. Could you also send the guest list for the launch venue?\r\n\r\n"
          "On Mon, Alice Park wrote:\r\n> Can you confirm the catering order for the launch by December 18?\r\n")


def _receive(store, inbox_id: str, raw: str) -> str:
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw.encode(), envelope_from="x@partner.example",
                                   envelope_to={inbox_id: "desk@x.example"})
        return stored.id


def test_thread_and_contact_digests(client, world, store) -> None:
    due = (clock.utcnow() + dt.timedelta(days=12)).date()
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, SCOPES)
    first = _receive(store, inbox_id, FIRST.format(due=f"{due:%B} {due.day}, {due.year}"))
    second = _receive(store, inbox_id, SECOND)
    with store.session() as db:
        thread_id = db.get(Message, first).thread_id
        assert db.get(Message, second).thread_id == thread_id

    digest = client.get(f"/v1/messages/threads/{thread_id}/digest/", headers=agent.auth)
    assert digest.status_code == 200, digest.json
    body = digest.json
    assert body["thread_id"] == thread_id and body["message_count"] == 2
    people = {p["email"]: p["messages"] for p in body["participants"]}
    assert people["alice@partner.example"] == people["bob@partner.example"] == 1
    texts = [s["text"] for s in body["key_sentences"]]
    assert texts and all("Alice Park, Events" not in t and not t.startswith(">") for t in texts)
    # Bob's question is open (nobody wrote after him); Alice's was followed by Bob's message.
    assert [q["text"] for q in body["open_questions"]] == [
        "Could you also send the guest list for the launch venue?"]
    [date] = body["dates"]
    assert date["at"].startswith(due.isoformat()) and date["from"] == "alice@partner.example"

    contact = client.post("/v1/contacts/", headers=agent.auth,
                          json={"full_name": "Alice Park", "emails": [{"address": "Alice@Partner.example"}]})
    assert contact.status_code == 201, contact.json
    about = client.get(f"/v1/contacts/{contact.json['contact_id']}/digest/", headers=agent.auth).json
    assert about["addresses"] == ["alice@partner.example"] and about["thread_count"] == 1
    assert about["message_count"] == 2 and about["dates"][0]["at"].startswith(due.isoformat())

    with store.session() as db:
        while enrich.tail(db) == enrich.BATCH:
            pass
    step = client.get(f"/v1/messages/{first}/", headers=agent.auth).json["enrichment"]["next_step"]
    assert step["action"] == "reply" and step["due"].startswith(due.isoformat())  # a request with its deadline
    reply = client.get(f"/v1/messages/{second}/", headers=agent.auth).json["enrichment"]["next_step"]
    assert reply == {"action": "reply", "summary": "Could you also send the guest list for the launch venue?",
                     "due": None}


def test_digests_of_another_inbox_are_404(client, world) -> None:
    owner, other = world.owner(), world.owner()
    agent = world.agent(other, world.inbox(other), SCOPES)
    assert client.get("/v1/messages/threads/thr_01J00000000000000000000000/digest/",
                      headers=agent.auth).status_code == 404
    assert client.get("/v1/contacts/ctc_01J00000000000000000000000/digest/", headers=agent.auth).status_code == 404
