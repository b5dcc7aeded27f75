"""What commit-ordered events cost (issue 14 point 12): the inbound store path and event-writing
transactions from several threads, on SQLite or PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/events_commit.py [DATABASE_URL]   # empty DB, or SQLite in a temp dir

1. inbound: 2,000 small messages stored through `inbound.store` in transactions of 1 and of 50
   (the SMTP committer's group commit), each committed; messages per second.
2. emitters: 8 threads, each committing 200 transactions that emit one event (what an API call
   that changes something does); transactions per second. On PostgreSQL these commits pass the
   event counter's row lock one at a time.
Prints one line per measurement.
"""
from __future__ import annotations

import secrets
import sys
import tempfile
import threading
import time

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.services.automation import events
from appliance.services.mail import inbound
from tests.world import World

MESSAGE = (b"From: Ann <ann@example.org>\r\nTo: bot@x.example.com\r\nSubject: hello %d\r\n"
           b"Message-ID: <%d.%s@example.org>\r\n\r\nA short note, number %d.\r\n")


def _store() -> tuple[Store, Settings]:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 else "")
    store = Store(settings)
    migrate(store.engine)
    return store, settings


def bench_inbound(store: Store, inbox_id: str, batch: int, total: int = 2000) -> float:
    run = secrets.token_hex(4).encode()
    prepared = [inbound.prepare(inbox_ids=[inbox_id], raw=MESSAGE % (i, i, run, i), envelope_from="ann@example.org",
                                envelope_to={}) for i in range(total)]
    started = time.perf_counter()
    for start in range(0, total, batch):
        with store.writer_turn(), store.session() as db:
            inbound.store(db, prepared[start:start + batch])
    return total / (time.perf_counter() - started)


def bench_emitters(store: Store, tenant_id: str, inbox_id: str, threads: int = 8, each: int = 200) -> float:
    def work() -> None:
        for _ in range(each):
            with store.session() as db:
                events.emit(db, "message.updated", tenant_id=tenant_id, inbox_id=inbox_id, payload={"is_read": True})
    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return threads * each / (time.perf_counter() - started)


def main() -> None:
    store, settings = _store()
    world = World(store, settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    backend = store.engine.dialect.name
    for batch in (1, 50):
        print(f"{backend} inbound batch={batch}: {bench_inbound(store, inbox_id, batch):.0f} messages/s")
    print(f"{backend} emitters 8 threads: {bench_emitters(store, owner.tenant_id, inbox_id):.0f} transactions/s")
    store.dispose()


if __name__ == "__main__":
    main()
