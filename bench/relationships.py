"""The relationship graph's read latency (issue 21 point 2): p99 under 100 ms for an inbox with
100,000 messages and 5,000 correspondents, on SQLite or PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/relationships.py [DATABASE_URL] [MESSAGES] [PEOPLE]

1. Writes MESSAGES (100,000) `message.received`/`message.sent` events for one inbox, as the mail
   paths emit them (payload: from or recipients, thread, subject), with correspondents drawn from
   PEOPLE (5,000) with a Zipf-like skew, a third of the mail in existing threads and sent mail to
   one to three people, spread over the last 400 days.
2. Runs the real projector (activity.project, the worker's loop) over all of them, timed.
3. Reads through the real WSGI app (Flask test client, agent token with context:read):
   GET /v1/relationships/ (limit 50 and 500) and GET /v1/relationships/{address}/ for random
   correspondents, 300 requests each; prints p50, p99 and max in milliseconds.
"""
from __future__ import annotations

import datetime as dt
import random
import secrets
import statistics
import sys
import tempfile
import time

from api.app import create_app
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.ids import new_id
from appliance.models import Inbox
from appliance.services import register_handlers
from appliance.services.automation import events
from appliance.services.intelligence import activity
from tests.world import World

BATCH = 5000


def _store() -> tuple[Store, Settings]:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else "",
                        rate_limit_token=10 ** 8)
    store = Store(settings)
    migrate(store.engine)
    return store, settings


def write_events(store: Store, tenant_id: str, inbox_id: str, messages: int, people: int) -> None:
    """The mail events of `messages` messages, oldest first, committed a batch at a time."""
    rng = random.Random(21)
    addresses = [f"person{i}@corr{i % 97}.example" for i in range(people)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(people)]
    threads: list[tuple[str, list[str]]] = []
    start = utcnow() - dt.timedelta(days=400)
    rows = []
    for n in range(messages):
        at = start + dt.timedelta(seconds=n * 400 * 86400 / messages)
        if threads and rng.random() < 0.33:
            thread_id, members = rng.choice(threads[-2000:])
        else:
            thread_id, members = new_id("thr"), rng.choices(addresses, weights, k=rng.randint(1, 3))
            threads.append((thread_id, members))
        if rng.random() < 0.5:
            rows.append({"type": "message.received", "payload": {"from": members[0], "thread_id": thread_id,
                                                                  "subject": f"note {n}"}})
        else:
            rows.append({"type": "message.sent", "payload": {"recipients": members, "thread_id": thread_id,
                                                              "subject": f"note {n}"}})
        rows[-1].update(tenant_id=tenant_id, inbox_id=inbox_id, resource_id=new_id("msg"), occurred_at=at)
        if len(rows) == BATCH:
            _commit(store, rows)
            rows = []
    if rows:
        _commit(store, rows)


def _commit(store: Store, rows: list[dict]) -> None:
    with store.session() as db:
        events.emit_many(db, rows, actor=events.SMTP)


def project(store: Store) -> int:
    total = 0
    while True:
        with store.session() as db:
            read = activity.project(db)
        total += read
        if read < activity.BATCH:
            return total


def timed(client, token: str, paths: list[str]) -> tuple[float, float, float]:
    took = []
    for path in paths:
        started = time.perf_counter()
        resp = client.get(path, headers={"Authorization": f"Bearer {token}"})
        took.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.99) - 1], took[-1]


def main() -> None:
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    people = int(sys.argv[3]) if len(sys.argv) > 3 else 5_000
    register_handlers()
    store, settings = _store()
    world = World(store, settings)
    owner = world.owner()
    agent = world.sender(owner, "desk@graph-bench.example", scopes=("context:read",))
    with store.session() as db:
        tenant_id = db.get(Inbox, agent.inbox_id).tenant_id
    project(store)  # the setup's own events first
    started = time.perf_counter()
    write_events(store, tenant_id, agent.inbox_id, messages, people)
    print(f"wrote {messages} message events in {time.perf_counter() - started:.1f} s "
          f"({store.engine.dialect.name})")
    started = time.perf_counter()
    read = project(store)
    spent = time.perf_counter() - started
    print(f"projected {read} events in {spent:.1f} s ({read / spent:.0f} events/s)")
    client = create_app(settings, store).test_client()
    body = client.get("/v1/relationships/", headers=agent.auth).json
    print(f"nodes: strongest {body['nodes'][0]['address']} strength {body['nodes'][0]['strength']}, "
          f"{len(body['edges'])} edges among the top 50")
    rng = random.Random(7)
    picks = [f"person{rng.randrange(people)}@corr0.example" for _ in range(300)]
    picks = [p.replace("corr0", f"corr{int(p[6:p.index('@')]) % 97}") for p in picks]
    known = [a for a in picks if client.get(f"/v1/relationships/{a}/", headers=agent.auth).status_code == 200]
    for label, paths in (("GET /v1/relationships/ (limit 50)", ["/v1/relationships/"] * 300),
                         ("GET /v1/relationships/?limit=500", ["/v1/relationships/?limit=500"] * 300),
                         ("GET /v1/relationships/{address}/", [f"/v1/relationships/{a}/" for a in known])):
        p50, p99, worst = timed(client, agent.raw, paths)
        print(f"{label}: {len(paths)} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    store.dispose()


if __name__ == "__main__":
    main()
