"""Prepare a store for the API benchmark: an owner, a verified domain, an inbox, an agent token,
and BENCH_MESSAGES received messages in that inbox (default 1,000, what GET /v1/messages/ pages).

Prints the agent token. Run with the same GENTBOX_* environment as the server.
"""
from __future__ import annotations

import os
import sys

from appliance.config import load_settings
from appliance.db import Store, migrate
from appliance.services.mail import inbound
from tests.world import World


def main() -> int:
    settings = load_settings()
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner("bench-owner@example.com")
    inbox_id = world.inbox(owner, "bench@bench.example.com")
    agent = world.agent(owner, inbox_id, ["email:read", "email:send"])
    _seed(store, inbox_id, int(os.environ.get("BENCH_MESSAGES", "1000")))
    print(agent.raw)
    return 0


def _seed(store: Store, inbox_id: str, count: int) -> None:
    """count received messages, a few per thread, stored as the listener stores them (in batches)."""
    for start in range(0, count, 100):
        incoming = [inbound.prepare(inbox_ids=[inbox_id], raw=_mail(n), envelope_from=f"s{n % 50}@partner.example",
                                    envelope_to={inbox_id: "bench@bench.example.com"})
                    for n in range(start, min(count, start + 100))]
        with store.session() as db:
            inbound.store(db, incoming, enforce_caps=False)
            db.commit()


def _mail(n: int) -> bytes:
    head = (f"From: Sender {n % 50} <s{n % 50}@partner.example>\r\nTo: bench@bench.example.com\r\n"
            f"Subject: Order {n // 4} update\r\nMessage-ID: <m{n}@partner.example>\r\n"
            f"Date: Mon, 7 Dec 2026 10:{n % 60:02d}:00 +0000\r\nContent-Type: text/plain\r\n\r\n")
    return (head + f"Hello, this is message {n} about order {n // 4}. " * 5 + "\r\n").encode()


if __name__ == "__main__":
    sys.exit(main())
