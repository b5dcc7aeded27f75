"""Enrichment throughput with the builtin model (issue 21; aim: at least 200 messages/s on one core).

Stores COUNT received messages (the 200 of the phishing evaluation set, repeated, each with its
own Message-ID) through the one inbound store function into a fresh SQLite store, then times the
worker's enrichment pass (`Worker.enrich_received()`: read each message.received event, parse the
raw message, the phishing rules, the tenant's naive Bayes model, the next step, store the result,
label, emit message.enriched), pinned to one CPU. Also times the judging alone (no database).
Usage: PYTHONPATH=. .venv/bin/python bench/enrichment.py [COUNT]   (default 1000)
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from appliance import security
from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.models import Inbox
from appliance.services.intelligence import nextstep, phishing
from appliance.services.intelligence.mailparts import read_mail
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.world import World

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "phishing" / "mail"


def corpus() -> list[bytes]:
    """The evaluation set without its first line (our Authentication-Results)."""
    return [p.read_bytes().split(b"\r\n", 1)[1] for p in sorted(CORPUS.glob("*.eml"))]


def judge_only(raws: list[bytes], rounds: int = 3) -> float:
    """Messages per second for parse + rules + next step, in memory."""
    ctx, now = phishing.Context(own_domains=frozenset({"harborlight.com"})), dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    for _ in range(rounds):
        for raw in raws:
            mail = read_mail(raw)
            verdict = phishing.result(phishing.assess(mail, {}, ctx))["verdict"]
            nextstep.next_step(mail, verdict=verdict, now=now)
    return rounds * len(raws) / (time.perf_counter() - started)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    security.set_password_cost(time_cost=1, memory_cost_kib=8)
    raws = corpus()
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="gentbox-enrich-"), secret_key=secrets.token_urlsafe(48),
                        dns_servers="127.0.0.1:9")
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    inbox_id = world.inbox(world.owner("owner@example.com"), "dana@harborlight.example.com")
    with store.session() as db:
        address = db.get(Inbox, inbox_id).address
    for start in range(0, count, 100):
        with store.session() as db:
            for n in range(start, min(count, start + 100)):
                raw = raws[n % len(raws)].replace(b"Message-ID: <", f"Message-ID: <{n}.".encode(), 1)
                inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="bench@example.net",
                                envelope_to={inbox_id: address}, enforce_caps=False)
    print(f"judging alone (parse, rules, next step; in memory): {judge_only(raws):.0f} messages/s")
    worker = Worker(store, settings)
    started = time.perf_counter()
    read = worker.enrich_received()
    elapsed = time.perf_counter() - started
    worker.close()
    print(f"worker enrichment pass: {read} events read, {count} messages enriched in {elapsed:.2f} s "
          f"= {count / elapsed:.0f} messages/s (SQLite, one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
