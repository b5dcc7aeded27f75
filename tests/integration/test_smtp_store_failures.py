"""When the store cannot take a message the client hears 451/452, never 250, and may retry."""
from __future__ import annotations

import shutil
import smtplib
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from appliance.db import Store, make_engine
from appliance.models import Message
from tests.integration.smtp_fixtures import client, message_bytes, smtp_listener, stored, tls_files  # noqa: F401


def message_count(store: Store) -> int:
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(Message))


def test_an_unreachable_store_defers_every_recipient(backend: str, settings, make_store,
                                                     smtp_listener, tmp_path: Path) -> None:
    if backend == "postgres":
        settings = settings.model_copy(update={"database_url": "postgresql://gentbox_test:x@127.0.0.1:9/gone"})
        store = make_store(settings)
    else:  # the data directory disappears under the running listener (a lost mount, say)
        folder = tmp_path / "lost"
        folder.mkdir()
        settings = settings.model_copy(update={"database_url": f"sqlite:///{folder / 'gentbox.db'}"})
        store = make_store(settings)
        shutil.rmtree(folder)
    address = smtp_listener(store=store, settings=settings)
    with client(address) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        code, reply = smtp.rcpt("agent@hosted.example")
        assert (code, reply[:5]) == (451, b"4.3.0"), reply
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("a@sender.example", ["agent@hosted.example"], message_bytes("x", "y"))
        assert refused.value.recipients["agent@hosted.example"][0] == 451


def test_a_store_failing_at_commit_answers_451_stores_nothing_and_recovers(
        world, store, smtp_listener, database_url: str) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener()
    admin = make_engine(database_url)
    sent = message_bytes("Retry me", "agent@hosted.example")
    try:
        with client(address) as smtp:
            assert smtp.mail("a@sender.example")[0] == 250
            assert smtp.rcpt("agent@hosted.example")[0] == 250
            with admin.begin() as conn:  # the raw-message table goes away between RCPT and DATA
                conn.execute(text("ALTER TABLE message_raw RENAME TO message_raw_away"))
            code, reply = smtp.data(sent)
            assert (code, reply[:5]) == (451, b"4.3.0"), reply
            assert message_count(store) == 0  # the whole unit of work was rolled back
            with admin.begin() as conn:
                conn.execute(text("ALTER TABLE message_raw_away RENAME TO message_raw"))
            assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], sent) == {}
    finally:
        with admin.begin() as conn:
            if "message_raw_away" in _tables(conn):
                conn.execute(text("ALTER TABLE message_raw_away RENAME TO message_raw"))
        admin.dispose()
    [(message, raw)] = stored(store)
    assert message.subject == "Retry me" and raw.endswith(sent)


def _tables(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
    return set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())


class FullDisk:
    """Make the store run out of space for real: SQLite through its page limit (SQLITE_FULL),
    PostgreSQL through its own disk_full error (SQLSTATE 53100), raised by a trigger."""

    def __init__(self, backend: str, database_url: str, store: Store) -> None:
        self.backend, self.store = backend, store
        self.admin = make_engine(database_url)
        self.max_pages: int | None = None
        if backend == "sqlite":
            @event.listens_for(store.engine, "connect")
            def _limit(dbapi_conn, _record):  # noqa: ANN001
                if self.max_pages is not None:
                    dbapi_conn.execute(f"PRAGMA max_page_count = {self.max_pages}")

    def fill(self) -> None:
        if self.backend == "sqlite":
            with self.admin.connect() as conn:
                self.max_pages = conn.execute(text("PRAGMA page_count")).scalar_one() + 4
            self.store.engine.dispose()  # new connections take the limit
            return
        with self.admin.begin() as conn:
            conn.execute(text(
                "CREATE OR REPLACE FUNCTION gentbox_test_disk_full() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'simulated: no room for this row' USING ERRCODE = 'disk_full'; END $$ "
                "LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER gentbox_test_disk_full BEFORE INSERT ON message_raw "
                              "FOR EACH ROW EXECUTE FUNCTION gentbox_test_disk_full()"))

    def free(self) -> None:
        if self.backend == "sqlite":
            self.max_pages = None
            self.store.engine.dispose()
            return
        with self.admin.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS gentbox_test_disk_full ON message_raw"))
            conn.execute(text("DROP FUNCTION IF EXISTS gentbox_test_disk_full()"))

    def close(self) -> None:
        self.free()
        self.admin.dispose()


def test_a_full_disk_answers_452_until_space_returns(world, backend: str, database_url: str, settings,
                                                     make_store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    listener_store = make_store(settings)
    disk = FullDisk(backend, database_url, listener_store)
    address = smtp_listener(store=listener_store)
    big = message_bytes("Big report", "agent@hosted.example", body=("z" * 76 + "\r\n") * 3000)
    try:
        disk.fill()
        with client(address) as smtp:
            for _ in range(2):  # the session survives, and so does the listener
                assert smtp.mail("a@sender.example")[0] == 250
                assert smtp.rcpt("agent@hosted.example")[0] == 250
                code, reply = smtp.data(big)
                assert (code, reply[:5]) == (452, b"4.3.1"), reply
            assert message_count(listener_store) == 0
            disk.free()
            assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], big) == {}
    finally:
        disk.close()
    [(message, raw)] = stored(listener_store)
    assert message.subject == "Big report" and raw.endswith(big)
