"""Issue 16.5 over real SMTP: mail to a distribution list's address is stored once in each member
inbox (same Message-ID, threaded per inbox, one `message.received` each, a List-Id on each copy),
in the listener's one transaction; a recipient set naming the list and a member stores one copy
for that member; a message carrying the list's own List-Id is refused as a loop and one already
delivered from the list is not stored again. The crash half is test_distribution_lists_crash.py.
"""
from __future__ import annotations

import smtplib

from sqlalchemy import select

from appliance.models import Event
from appliance.services.identity.auth import authenticate
from appliance.services.team import lists
from tests.integration.smtp_fixtures import client, message_bytes, smtp_listener, stored, tls_files  # noqa: F401


def make_list(world, owner, address: str, members: list[str]) -> str:
    """A list at address with these member inboxes (created through the service, as the API does)."""
    with world.store.session() as db:
        principal = authenticate(db, owner.access_token)
        row = lists.create_list(db, principal, address, "Team")
        for inbox_id in members:
            lists.add_member(db, principal, row.id, inbox_id)
        return row.id


def team_of_three(world):
    owner = world.owner()
    members = [world.inbox(owner, f"{name}@alpha.test") for name in ("ann", "bob", "cat")]
    return owner, members, make_list(world, owner, "team@alpha.test", members)


def send(address, rcpts: list[str], data: bytes) -> tuple[int, bytes]:
    with client(address) as smtp:
        smtp.mail("alice@sender.example")
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250, rcpt
        try:
            return smtp.data(data)
        except smtplib.SMTPResponseException as exc:  # a 5xx after DATA: the reply is what we test
            return exc.smtp_code, exc.smtp_error


def test_mail_to_the_list_lands_once_in_each_of_three_member_inboxes(world, store, smtp_listener) -> None:
    _owner, members, _list_id = team_of_three(world)
    address = smtp_listener()
    first = message_bytes("Kick-off", "team@alpha.test", message_id="<kickoff@sender.example>")
    code, reply = send(address, ["Team@alpha.test"], first)
    assert code == 250, reply
    rows = stored(store)
    assert sorted(m.inbox_id for m, _raw in rows) == sorted(members)
    assert {m.message_id_header for m, _raw in rows} == {"<kickoff@sender.example>"}
    assert len({m.thread_id for m, _raw in rows}) == 3  # a thread of its own in each inbox
    for message, raw in rows:
        assert raw.startswith(b"List-Id: <team.alpha.test>\r\nReceived: ") and raw.endswith(first)
        assert message.envelope_to == "Team@alpha.test"
    assert reply.decode().split("queued as ")[1].split() == [m.id for m, _raw in rows]
    with store.read_sessions() as db:
        events = db.scalars(select(Event).where(Event.type == "message.received")).all()
    assert sorted((e.inbox_id, e.resource_id) for e in events) == sorted((m.inbox_id, m.id) for m, _raw in rows)
    # A reply to the list joins each member's own thread.
    threads = {m.inbox_id: m.thread_id for m, _raw in rows}
    answer = message_bytes("Re: Kick-off", "team@alpha.test", message_id="<answer@sender.example>").replace(
        b"\r\n\r\n", b"\r\nIn-Reply-To: <kickoff@sender.example>\r\n\r\n", 1)
    assert send(address, ["team@alpha.test"], answer)[0] == 250
    replies = stored(store, message_id_header="<answer@sender.example>")
    assert {m.inbox_id: m.thread_id for m, _raw in replies} == threads


def test_the_list_and_a_member_named_together_give_that_member_one_copy(world, store, smtp_listener) -> None:
    _owner, members, _list_id = team_of_three(world)
    address = smtp_listener()
    code, reply = send(address, ["team@alpha.test", "bob@alpha.test"], message_bytes("Both", "team@alpha.test"))
    assert code == 250, reply
    copies = sorted((m.inbox_id, m.envelope_to) for m, _raw in stored(store))
    assert copies == sorted([(members[0], "team@alpha.test"), (members[1], "bob@alpha.test"),
                             (members[2], "team@alpha.test")])


def test_a_loop_through_the_list_is_refused_and_a_resend_is_not_stored_twice(world, store, smtp_listener) -> None:
    _owner, members, _list_id = team_of_three(world)
    address = smtp_listener()
    looped = b"List-Id: Team <team.alpha.test>\r\n" + message_bytes("Around again", "team@alpha.test")
    code, reply = send(address, ["team@alpha.test"], looped)
    assert code == 554 and b"5.4.6" in reply, reply
    assert stored(store) == []
    # Another list's List-Id is no loop for this one.
    other = b"List-Id: <dev.lists.example>\r\n" + message_bytes("From elsewhere", "team@alpha.test")
    assert send(address, ["team@alpha.test"], other)[0] == 250
    assert len(stored(store)) == 3
    # The same message through the list again (a resend, or back through an outside forwarder): no new copy.
    once = message_bytes("Once", "team@alpha.test", message_id="<once@sender.example>")
    assert send(address, ["team@alpha.test"], once)[0] == 250
    assert send(address, ["TEAM@alpha.test"], once)[0] == 250
    assert sorted(m.inbox_id for m, _raw in stored(store, message_id_header="<once@sender.example>")) == sorted(members)
    # A copy that went out and came back carries the List-Id we stamped on it: refused.
    _message, raw = stored(store, message_id_header="<once@sender.example>")[0]
    assert send(address, ["team@alpha.test"], raw.split(b"\r\n", 1)[0] + b"\r\n" + message_bytes(
        "Forwarded back", "team@alpha.test"))[0] == 554


def test_a_paused_member_is_skipped_and_a_deleted_list_is_unknown(world, store, smtp_listener) -> None:
    owner, members, list_id = team_of_three(world)
    address = smtp_listener()
    with world.store.session() as db:
        principal = authenticate(db, owner.access_token)
        from appliance.services.identity import inboxes
        inboxes.update_inbox(db, principal, members[2], {"status": "paused"})
    assert send(address, ["team@alpha.test"], message_bytes("Two of three", "team@alpha.test"))[0] == 250
    assert sorted(m.inbox_id for m, _raw in stored(store)) == sorted(members[:2])
    with world.store.session() as db:
        lists.delete_list(db, authenticate(db, owner.access_token), list_id)
    with client(address) as smtp:
        smtp.mail("alice@sender.example")
        assert smtp.rcpt("team@alpha.test")[0] == 550


def test_a_list_without_a_live_member_refuses_at_rcpt_instead_of_dropping_the_mail(world, store, smtp_listener) -> None:
    """No member: 550 (the sender learns now); every member paused: 450 (it retries, as with a
    paused inbox). Either way nothing is accepted that no inbox would store."""
    owner = world.owner()
    ann = world.inbox(owner, "ann@alpha.test")
    make_list(world, owner, "empty@alpha.test", [])
    make_list(world, owner, "resting@alpha.test", [ann])
    with world.store.session() as db:
        from appliance.services.identity import inboxes
        inboxes.update_inbox(db, authenticate(db, owner.access_token), ann, {"status": "paused"})
    address = smtp_listener()
    with client(address) as smtp:
        smtp.mail("alice@sender.example")
        assert smtp.rcpt("empty@alpha.test")[0] == 550
        assert smtp.rcpt("resting@alpha.test")[0] == 450
    assert stored(store) == []
