"""Migration 0004_message_read_indexes on a store that already holds mail: afterwards every message
is found by `q` in its own inbox only, a deleted one no longer, and the lists read off the new
(inbox, time, id) index; the migration also goes down and up again."""
from __future__ import annotations

from sqlalchemy import insert, inspect, text

from appliance.models import Inbox, Message, MessageSearch, Thread
from appliance.services.mail import inbound, messages
from tests.helpers import alembic
from appliance.clock import utcnow
from appliance.ids import new_id

BEFORE = "0004_outbound"



def store_the_old_way(store, inbox_id: str, tenant_id: str, subject: str, body: str) -> str:
    """A message with its search entry as the code before the migration wrote them."""
    now, message_id, thread_id = utcnow(), new_id("msg"), new_id("thr")
    document = f"{subject}\nsender@example.org\n{body}"
    with store.session() as db:
        db.execute(insert(Thread.__table__).values(id=thread_id, tenant_id=tenant_id, inbox_id=inbox_id,
                                                   subject=subject, message_count=1, created_at=now,
                                                   last_message_at=now))
        db.execute(insert(Message.__table__).values(
            id=message_id, tenant_id=tenant_id, inbox_id=inbox_id, thread_id=thread_id, direction="inbound",
            status="received", subject=subject, is_read=False, created_at=now, from_email="sender@example.org",
            text_body=body, received_at=now))
        db.execute(insert(MessageSearch.__table__).values(message_id=message_id, inbox_id=inbox_id, document=document))
        if db.get_bind().dialect.name == "sqlite":
            db.execute(text("INSERT INTO messages_fts (message_id, inbox_id, document) VALUES (:m, :i, :d)"),
                       {"m": message_id, "i": inbox_id, "d": document})
    return message_id


def found(store, inbox_id: str, q: str) -> list[str]:
    with store.read_sessions() as db:
        page, _cursor = messages.list_messages(db, db.get(Inbox, inbox_id), limit=50, q=q)
        return [m.subject for m in page]


def test_the_migration_keeps_every_message_findable_in_its_own_inbox_only(world, store) -> None:
    owner = world.owner()
    first, second = world.inbox(owner, "first@hosted.example"), world.inbox(owner, "second@hosted.example")
    alembic(store, "downgrade", BEFORE)
    try:
        old = store_the_old_way(store, first, owner.tenant_id, "Quarterly invoice", "the amount is due")
        store_the_old_way(store, second, owner.tenant_id, "Another invoice", "for the second inbox")
    finally:
        alembic(store, "upgrade", "head")
    indexes = {ix["name"] for ix in inspect(store.engine).get_indexes("messages")}
    assert "ix_messages_inbox_created_id" in indexes
    with store.session() as db:  # and new mail is indexed the new way beside the old
        inbound.receive(db, inbox_ids=[first], envelope_from="b@example.org", envelope_to={},
                        raw=b"From: b@example.org\r\nSubject: Second invoice\r\n\r\nAlso due.\r\n")
    assert found(store, first, "invoice") == ["Second invoice", "Quarterly invoice"]
    assert found(store, second, "invoice") == ["Another invoice"]
    assert found(store, first, "due sender@example.org") == ["Quarterly invoice"]
    with store.session() as db:
        messages.delete_message(db, db.get(Inbox, first), old)
    assert found(store, first, "invoice") == ["Second invoice"]
    alembic(store, "downgrade", BEFORE)  # and back, and forth again
    alembic(store, "upgrade", "head")
    assert found(store, first, "invoice") == ["Second invoice"]
    assert found(store, second, "invoice") == ["Another invoice"]
