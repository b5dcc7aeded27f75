"""Where POST /v1/messages/ spends its time: CPU per send and the share inside the write transaction.

Usage: PYTHONPATH=. .venv/bin/python bench/profile_send.py [DATABASE_URL] [SENDS]
Flask's test client, one thread, 5 KiB sends after 50 to warm up; a listener on the write engine
times each transaction from BEGIN to COMMIT (on SQLite the time the write lock is held).
"""
from __future__ import annotations

import secrets
import sys
import tempfile
import time

from sqlalchemy import event

from api.app import create_app
from appliance.config import Settings
from appliance.db import Store, migrate
from tests.world import World


def main() -> None:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 else "", rate_limit_token=10**9,
                        hostname="mail.bench.test", dns_servers="127.0.0.1:9")
    sends = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    agent = world.sender(world.owner("send-owner@example.com"), "sender@send.example.com", scopes=("email:send",))
    client = create_app(settings, store).test_client()
    held: list[float] = []
    began: dict[str, float] = {}
    event.listen(store.engine, "begin", lambda conn: began.__setitem__("at", time.perf_counter()))
    for name in ("commit", "rollback"):
        event.listen(store.engine, name, lambda conn: held.append(time.perf_counter() - began.pop("at", time.perf_counter())))
    body = {"to": [{"email": "someone@example.org"}], "subject": "hello", "text_body": "x" * 5000}
    for _ in range(50):
        assert client.post("/v1/messages/", json=body, headers=agent.auth).status_code == 201
    held.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(sends):
        client.post("/v1/messages/", json=body, headers=agent.auth)
    wall, cpu = (time.perf_counter() - wall) / sends * 1000, (time.process_time() - cpu) / sends * 1000
    inside = sum(held) / sends * 1000
    print(f"{wall:.2f} ms per send, CPU {cpu:.2f} ms; inside the write transaction {inside:.2f} ms ({inside / wall:.0%})")


if __name__ == "__main__":
    main()
