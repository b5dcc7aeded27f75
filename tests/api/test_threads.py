"""Contract section 5, threads: replies join the thread they answer (same inbox only), threads
list by latest activity and read oldest first. Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt
from email.utils import make_msgid

from sqlalchemy import select

from api.routes.mail.messages import ThreadFull, ThreadList
from appliance import clock
from appliance.models import Thread
from tests.api.test_messages import box, build_mail, deliver, full, listed_ids  # noqa: F401 - box is a fixture
from tests.helpers import assert_error


def threads(client, auth: dict, **query) -> dict:
    resp = client.get("/v1/messages/threads/", query_string=query, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    ThreadList.model_validate(resp.json)
    return resp.json


def thread(client, auth: dict, thread_id: str, **query) -> dict:
    resp = client.get(f"/v1/messages/threads/{thread_id}/", query_string=query, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    ThreadFull.model_validate(resp.json)
    return resp.json


def test_a_reply_joins_the_thread_it_answers(client, box):
    first_id = make_msgid(domain="sender.example")
    first = box.deliver(build_mail(subject="Project kickoff", message_id=first_id, text="Shall we start?",
                                   cc="Carol <carol@cc.example>"))
    clock.advance(dt.timedelta(seconds=5))
    reply_id = make_msgid(domain="other.example")
    reply = box.deliver(build_mail(subject="Re: Project kickoff", sender="bob@other.example", message_id=reply_id,
                                   in_reply_to=first_id, text="Yes, Monday.",
                                   html="<p>Yes, <b>Monday</b>.<script>alert(1)</script></p>"))
    clock.advance(dt.timedelta(seconds=5))
    # Only References (no In-Reply-To), naming the reply: the same thread.
    later = box.deliver(build_mail(subject="Re: Re: Project kickoff", references=f"{first_id} {reply_id}",
                                   text="Great."))
    unrelated = box.deliver(build_mail(subject="Project kickoff", text="Same subject, no reference."))

    auth = box.agent.auth
    thread_id = full(client, auth, first)["thread_id"]
    assert full(client, auth, reply)["thread_id"] == thread_id
    assert full(client, auth, later)["thread_id"] == thread_id
    assert full(client, auth, unrelated)["thread_id"] != thread_id  # subjects do not thread

    client.patch(f"/v1/messages/{reply}/", json={"labels": ["meetings"]}, headers=auth)
    client.patch(f"/v1/messages/{first}/", json={"labels": ["kickoff", "meetings"]}, headers=auth)
    answer = thread(client, auth, thread_id)
    assert answer["thread_id"] == thread_id and answer["subject"] == "Project kickoff"
    assert answer["message_count"] == 3
    assert [m["message_id"] for m in answer["messages"]] == [first, reply, later]  # oldest first
    assert set(answer["participants"]) == {"alice@sender.example", "bob@other.example", "agent@box.example",
                                           "carol@cc.example"}
    assert sorted(answer["labels"]) == ["kickoff", "meetings"]
    messages = answer["messages"]
    assert messages[1]["text_body"].strip() == "Yes, Monday."
    assert "<b>Monday</b>" in messages[1]["html_body"] and "<script" not in messages[1]["html_body"]
    assert messages[1]["headers"]["In-Reply-To"] == first_id
    assert messages[2]["headers"]["References"] == f"{first_id} {reply_id}"
    assert all(m["thread_id"] == thread_id for m in messages)
    # The thread's messages are also the messages list filtered by thread.
    assert listed_ids(client, auth, thread_id=thread_id) == [later, reply, first]


def test_a_reference_to_another_inboxs_message_starts_a_new_thread(client, box, world):
    original_id = make_msgid(domain="sender.example")
    other_inbox = world.inbox(box.owner)
    theirs = deliver(world, other_inbox, build_mail(message_id=original_id))
    mine = box.deliver(build_mail(subject="Re: Hello", in_reply_to=original_id))
    reader = world.agent(box.owner, other_inbox, ["email:read"])
    their_thread = full(client, reader.auth, theirs)["thread_id"]
    my_thread = full(client, box.agent.auth, mine)["thread_id"]
    assert my_thread != their_thread
    assert_error(client.get(f"/v1/messages/threads/{their_thread}/", headers=box.agent.auth), 404, "not_found")
    assert_error(client.get(f"/v1/messages/threads/{their_thread}/", query_string={"inbox_id": other_inbox},
                            headers=box.agent.auth), 403, "inbox_mismatch")
    assert [t["thread_id"] for t in threads(client, box.agent.auth)["results"]] == [my_thread]
    stranger = world.owner()
    assert_error(client.get(f"/v1/messages/threads/{my_thread}/", query_string={"inbox_id": box.inbox_id},
                            headers=stranger.auth), 404, "not_found")
    owner_view = thread(client, box.owner.auth, my_thread, inbox_id=box.inbox_id)
    assert [m["message_id"] for m in owner_view["messages"]] == [mine]


def test_threads_list_by_latest_activity_and_page(client, box):
    old_id = make_msgid(domain="sender.example")
    old = box.deliver(build_mail(subject="Old topic", message_id=old_id))
    clock.advance(dt.timedelta(seconds=5))
    middle = box.deliver(build_mail(subject="Middle topic", text="giraffe"))
    clock.advance(dt.timedelta(seconds=5))
    newest = box.deliver(build_mail(subject="Newest topic"))
    auth = box.agent.auth
    ids = {m: full(client, auth, m)["thread_id"] for m in (old, middle, newest)}
    assert [t["thread_id"] for t in threads(client, auth)["results"]] == [ids[newest], ids[middle], ids[old]]

    clock.advance(dt.timedelta(seconds=5))
    answer = box.deliver(build_mail(subject="Re: Old topic", in_reply_to=old_id, text="Reviving this."))
    listing = threads(client, auth)["results"]
    assert [t["thread_id"] for t in listing] == [ids[old], ids[newest], ids[middle]]
    revived = listing[0]
    assert revived["subject"] == "Old topic" and revived["message_count"] == 2
    assert revived["unread_count"] == 2 and revived["snippet"] == "Reviving this."
    assert revived["last_message_at"] == full(client, auth, answer)["received_at"]

    seen, cursor = [], None
    while True:
        page = threads(client, auth, limit=1, **({"cursor": cursor} if cursor else {}))
        assert len(page["results"]) <= 1
        seen += [t["thread_id"] for t in page["results"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == [ids[old], ids[newest], ids[middle]]
    assert [t["thread_id"] for t in threads(client, auth, q="giraffe")["results"]] == [ids[middle]]
    assert [t["thread_id"] for t in threads(client, auth, q="reviving")["results"]] == [ids[old]]
    assert threads(client, auth, q="okapi")["results"] == []
    assert_error(client.get("/v1/messages/threads/", query_string={"cursor": "nope"}, headers=auth),
                 400, "validation_error", field="cursor")


def test_deleting_messages_shrinks_and_then_removes_the_thread(client, box, store):
    first_id = make_msgid(domain="sender.example")
    first = box.deliver(build_mail(subject="Short thread", message_id=first_id))
    clock.advance(dt.timedelta(seconds=5))
    reply = box.deliver(build_mail(subject="Re: Short thread", in_reply_to=first_id))
    auth = box.agent.auth
    thread_id = full(client, auth, first)["thread_id"]
    first_time = full(client, auth, first)["received_at"]

    assert client.delete(f"/v1/messages/{reply}/", headers=auth).status_code == 204
    answer = thread(client, auth, thread_id)
    assert answer["message_count"] == 1 and [m["message_id"] for m in answer["messages"]] == [first]
    assert answer["last_message_at"] == first_time  # activity falls back to what is left

    assert client.delete(f"/v1/messages/{first}/", headers=auth).status_code == 204
    assert_error(client.get(f"/v1/messages/threads/{thread_id}/", headers=auth), 404, "not_found")
    assert threads(client, auth)["results"] == []
    with store.session() as db:
        assert db.scalar(select(Thread).where(Thread.id == thread_id)) is None
