"""Migration 0043: GET /v1/users/me/'s two questions (has the agent's inbox sent anything, read
anything) are each one probe of a partial index, whatever the inbox holds; before, an inbox that
never sent or never read had all its messages visited on every call."""
from __future__ import annotations

from sqlalchemy import insert, inspect, text, update

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import Message, Thread
from appliance.services.identity import users
from tests.helpers import alembic

COUNT = 3000


def fill(store, inbox_id: str, tenant_id: str) -> None:
    """COUNT unread received messages in the inbox (rows only: the plan, not the mail, is under test)."""
    now, thread_id = utcnow(), new_id("thr")
    rows = [{"id": new_id("msg"), "tenant_id": tenant_id, "inbox_id": inbox_id, "thread_id": thread_id,
             "direction": "inbound", "status": "received", "subject": f"n{n}", "is_read": False,
             "created_at": now, "from_email": "sender@example.org", "text_body": "", "received_at": now}
            for n in range(COUNT)]
    with store.session() as db:
        db.execute(insert(Thread.__table__).values(id=thread_id, tenant_id=tenant_id, inbox_id=inbox_id,
                                                   subject="n", message_count=COUNT, created_at=now,
                                                   last_message_at=now))
        db.execute(insert(Message.__table__), rows)
        db.execute(text("ANALYZE"))


def plan(store, inbox_id: str) -> str:
    """The plan of users/me's statement for this inbox (PostgreSQL's without sequential scans,
    which a planner may pick for a test-sized table whatever the indexes)."""
    with store.read_sessions() as db:
        conn = db.connection()
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + users._AGENT_ME.text), {"inbox_id": inbox_id})
            return "\n".join(str(row[-1]) for row in rows)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        rows = conn.execute(text("EXPLAIN " + users._AGENT_ME.text), {"inbox_id": inbox_id})
        return "\n".join(row[0] for row in rows)


def steps(store, inbox_id: str) -> tuple[bool, bool]:
    with store.read_sessions() as db:
        has_sent, has_read, _address = db.connection().execute(users._AGENT_ME, {"inbox_id": inbox_id}).one()
        return bool(has_sent), bool(has_read)


def test_each_question_is_one_probe_of_its_partial_index(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    fill(store, inbox_id, owner.tenant_id)
    found = plan(store, inbox_id)
    assert "ix_messages_inbox_sent" in found and "ix_messages_inbox_read" in found, found
    assert steps(store, inbox_id) == (False, False)
    with store.session() as db:  # the answers follow the rows
        one = db.scalar(text("SELECT id FROM messages WHERE inbox_id = :i LIMIT 1"), {"i": inbox_id})
        db.execute(update(Message).where(Message.id == one).values(is_read=True))
    assert steps(store, inbox_id) == (False, True)
    with store.session() as db:
        db.execute(update(Message).where(Message.id == one).values(direction="outbound", is_read=False))
    assert steps(store, inbox_id) == (True, False)


def test_the_migration_goes_down_and_up(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    alembic(store, "downgrade", "0042_token_cache")
    try:
        assert "ix_messages_inbox_read" not in {ix["name"] for ix in inspect(store.engine).get_indexes("messages")}
        fill(store, inbox_id, owner.tenant_id)
        with store.session() as db:  # read before the index exists
            db.execute(update(Message).where(Message.inbox_id == inbox_id, Message.subject == "n7").values(is_read=True))
    finally:
        alembic(store, "upgrade", "head")
    assert {"ix_messages_inbox_sent", "ix_messages_inbox_read"} <= {
        ix["name"] for ix in inspect(store.engine).get_indexes("messages")}
    assert "ix_messages_inbox_read" in plan(store, inbox_id)
    assert steps(store, inbox_id) == (False, True)  # a row read before the index is in it
