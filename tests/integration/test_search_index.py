"""SQLite's search index after migration 0008: the text of a message is written once (in
messages.text_body), the FTS5 index keeps none of it, and triggers keep the index in step with its
content whoever writes: received and sent mail, the delete service, a cascade, a changed text, and
the migration both ways. FTS5's own 'integrity-check' (with rank 1, which compares the index
against the content the view gives) proves the index holds exactly what the content says.

And the listener's WAL checkpoint thread (appliance.db.WalCheckpointer): with writers committing
large messages without pause, the WAL stays bounded and is fully checkpointed at the end."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from appliance.models import Inbox
from appliance.services.mail import inbound, messages
from tests.helpers import alembic

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's search has no such parts

MAIL = (b"From: Alice Example <alice@example.org>\r\nTo: agent@hosted.example\r\n"
        b"Subject: Quarterly report\r\nMessage-ID: <%s@example.org>\r\n\r\n%s\r\n")
HEAD = "Quarterly report\nalice@example.org Alice Example bounce@example.org agent@hosted.example"


def receive(store, inbox_id: str, body: bytes, tag: bytes = b"1") -> str:
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=MAIL % (tag, body),
                                   envelope_from="bounce@example.org", envelope_to={})
    return stored.id


def found(store, inbox_id: str, q: str) -> list[str]:
    with store.read_sessions() as db:
        page, _cursor = messages.list_messages(db, db.get(Inbox, inbox_id), limit=50, q=q)
        return [m.id for m in page]


def assert_index_consistent(store) -> None:
    with store.session() as db:  # raises "database disk image is malformed" on any difference
        db.execute(text("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"))


def test_the_text_is_written_once_and_found_by_subject_body_and_address(world, store) -> None:
    inbox_id = world.inbox(world.owner(), "agent@hosted.example")
    body = b"The zebra crossed the savanna. " * 2000  # 62 KB of text
    message_id = receive(store, inbox_id, body)
    for q in ("zebra", "quarterly", "alice@example.org", "bounce@example.org", "Alice savanna"):
        assert found(store, inbox_id, q) == [message_id], q
    assert found(store, inbox_id, "giraffe") == []
    with store.session() as db:
        document = db.scalar(text("SELECT document FROM message_search WHERE message_id = :m"), {"m": message_id})
        assert document == HEAD
        tables = set(db.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
        assert "messages_fts_content" not in tables  # FTS5 keeps no content of its own
        assert db.scalar(text("SELECT sum(length(block)) FROM messages_fts_data")) < len(body) / 4  # positions, no text
    assert_index_consistent(store)


def test_the_index_follows_every_way_a_message_changes_or_goes(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    other_inbox = world.inbox(owner, "other@hosted.example")
    by_service, by_cascade, edited, kept = (receive(store, inbox_id, f"zebra number {n}".encode(), str(n).encode())
                                            for n in range(4))
    elsewhere = receive(store, other_inbox, b"zebra elsewhere", b"x")
    assert sorted(found(store, inbox_id, "zebra")) == sorted([by_service, by_cascade, edited, kept])

    with store.session() as db:  # the delete service
        messages.delete_message(db, db.get(Inbox, inbox_id), by_service)
    assert_index_consistent(store)
    with store.session() as db:  # a row deleted by SQL: its search row goes first (a trigger)
        db.execute(text("DELETE FROM messages WHERE id = :m"), {"m": by_cascade})
        assert db.scalar(text("SELECT count(*) FROM message_search WHERE message_id = :m"), {"m": by_cascade}) == 0
    assert_index_consistent(store)
    with store.session() as db:  # a changed text is reindexed
        db.execute(text("UPDATE messages SET text_body = 'a giraffe now' WHERE id = :m"), {"m": edited})
    assert_index_consistent(store)
    assert found(store, inbox_id, "giraffe") == [edited]
    assert found(store, inbox_id, "zebra") == [kept]
    assert found(store, other_inbox, "zebra") == [elsewhere]



def test_the_migration_both_ways_keeps_every_message_findable(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    first = receive(store, inbox_id, b"the zebra line\r\nsecond line", b"1")
    second = receive(store, inbox_id, b"only giraffes", b"2")
    alembic(store, "downgrade", "0007_webui")
    with store.session() as db:  # the old shape: whole documents, an FTS5 table with its own copy
        documents = dict(db.execute(text("SELECT message_id, document FROM message_search")).all())
        assert documents[first] == HEAD + "\nthe zebra line\r\nsecond line\r\n"
        old = db.scalars(text("SELECT message_id FROM messages_fts WHERE messages_fts MATCH 'zebra'")).all()
        assert old == [first]
    alembic(store, "upgrade", "head")
    with store.session() as db:
        heads = dict(db.execute(text("SELECT message_id, document FROM message_search")).all())
    assert heads == {first: HEAD, second: HEAD}  # cut to subject and addresses
    assert_index_consistent(store)
    assert found(store, inbox_id, "zebra") == [first]
    assert found(store, inbox_id, "giraffes") == [second]
    assert sorted(found(store, inbox_id, "alice@example.org")) == sorted([first, second])


def test_the_checkpoint_thread_keeps_the_wal_bounded_under_constant_writes(world, store) -> None:
    inbox_id = world.inbox(world.owner(), "agent@hosted.example")
    checkpointer = store.start_checkpointer()
    wal = store.engine.url.database + "-wal"
    body = os.urandom(60_000).hex().encode()  # 120 KB per message, nothing a page could share
    stop = threading.Event()
    written = [0, 0]

    def writer(n: int) -> None:
        while not stop.is_set():
            incoming = [inbound.prepare(inbox_ids=[inbox_id], raw=MAIL % (b"w", body), envelope_from="",
                                        envelope_to={})] * 4
            with store.writer_turn(), store.session() as db:
                assert db.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
                inbound.store(db, incoming)
            checkpointer.poke()
            written[n] += 4

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    largest = 0
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(written) * len(body) < 250_000_000 and time.monotonic() < deadline:
            largest = max(largest, os.path.getsize(wal) if os.path.exists(wal) else 0)
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        checkpointer.stop()
    total = sum(written) * len(body)
    assert total > 250_000_000, "the writers did not write enough to tell"
    # Without the thread the WAL would hold every byte written (autocheckpoint is off). With it, the
    # WAL holds what is written while one pass copies the WAL into the file: tens of megabytes on
    # an idle disk, more when other fsyncs share the disk (83 MB seen under CI's load), so the
    # bound is a fraction of the total, which only an unbounded WAL reaches.
    assert largest < total * 0.4, f"the WAL grew to {largest:,} bytes for {total:,} bytes written"
    with contextlib.closing(sqlite3.connect(store.engine.url.database)) as conn:  # nothing left to copy
        _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames == copied
    assert checkpointer.checkpoints > 10


def test_a_search_reads_the_index_first(world, store) -> None:
    """The planner, left free, walked the inbox's search rows and matched each one: seconds in a
    large inbox. The search statement must start at the index."""
    inbox_id = world.inbox(world.owner(), "agent@hosted.example")
    for n in range(30):
        receive(store, inbox_id, b"zebra", str(n).encode())
    with store.session() as db:
        db.execute(text("ANALYZE"))
        plan = [row[-1] for row in db.execute(text("EXPLAIN QUERY PLAN " + messages.FTS_MATCHES),
                                              {"fts": 'inbox_key : "x" AND {head body} : ("zebra")',
                                               "fts_inbox": inbox_id})]
    assert plan[0].startswith("SCAN messages_fts VIRTUAL TABLE"), plan
