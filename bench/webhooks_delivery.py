"""Webhook delivery throughput (issue 15): events per second from commit to a verified receipt on
loopback, with 10 alerts, on SQLite or PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/webhooks_delivery.py [DATABASE_URL] [EVENTS]   # empty DB, or SQLite in a temp dir

Ten inboxes with one webhook alert each (`fanout=1`: each event goes to one alert), then one inbox
with ten alerts (`fanout=10`: each event goes to all ten). A thread commits EVENTS events (default
2,000) in transactions of 10 while the delivery engine (the worker's Dispatcher, default settings:
16 threads, 4 per alert) runs; a ThreadingHTTPServer on loopback verifies every request with the
standardwebhooks package. Prints events/s and webhooks/s from the first commit to the last
verified receipt, the commit-to-receipt latency p50/p99, and the process's CPU time per webhook
(a figure the machine's other load changes far less than the rate: compare runs with it), with
the engine's share: its loop's steps and its sending threads (thread CPU time).
"""
from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import threading
import time

import standardwebhooks
from sqlalchemy import update

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.dns import Resolver
from appliance.models import Alert
from appliance.services.automation import dispatch, events
from tests.integration.webhook_receiver import Receiver, make_alert
from tests.world import World


def _store(url: str) -> tuple[Store, Settings]:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48), database_url=url,
                        hostname="mail.bench.test", webhook_allow_private=True, dns_servers="127.0.0.1:9",
                        worker_poll_interval=0.05)
    store = Store(settings)
    migrate(store.engine)
    return store, settings


def run(store: Store, settings: Settings, inboxes: list[tuple[str, str]], alerts_per_inbox: int, total: int) -> str:
    receiver = Receiver([])
    latencies: list[float] = []
    stamps: dict[str, float] = {}
    seen: set[str] = set()
    lock = threading.Lock()

    secret_of: dict[str, standardwebhooks.Webhook] = {}

    def behave(number, hit):  # noqa: ANN001, ANN202
        event_id, alert_id = hit.webhook_id[len("msg_"):].split("_alr_")
        secret_of["alr_" + alert_id].verify(hit.body, hit.headers)  # raises on a bad signature
        with lock:
            if hit.webhook_id not in seen:
                seen.add(hit.webhook_id)
                # A receipt may beat the emitter's note of its commit time (by microseconds): 0.
                latencies.append(max(0.0, time.perf_counter() - stamps.get(event_id, time.perf_counter())))
        return 200, {}, 0.0
    receiver.behave = behave
    with store.session() as db:
        for tenant_id, inbox_id in inboxes:
            for _ in range(alerts_per_inbox):
                alert, secret = make_alert(db, settings, tenant_id=tenant_id, inbox_id=inbox_id, target=receiver.url,
                                           events=["message.updated"])
                secret_of[alert.id] = standardwebhooks.Webhook(secret)
    expected = total * alerts_per_inbox
    engine = dispatch.Dispatcher(store, settings, Resolver(settings), name="bench")
    spent = _time_engine(engine)
    stopping = threading.Event()
    thread = engine.start(stopping)
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, total, 10):
        with store.session() as db:
            made = [events.emit(db, "message.updated", tenant_id=inboxes[(start // 10) % len(inboxes)][0],
                                inbox_id=inboxes[(start // 10) % len(inboxes)][1], payload={"n": n})
                    for n in range(start, min(start + 10, total))]
        now = time.perf_counter()
        for event in made:
            stamps[event.id] = now
    while len(seen) < expected:
        if time.perf_counter() - started > 600:
            raise SystemExit(f"only {len(seen)} of {expected} webhooks verified in 10 minutes")
        time.sleep(0.01)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stopping.set()
    thread.join()
    engine.close()
    receiver.stop()
    with store.session() as db:  # the next run's events must not also go to this run's stopped receiver
        db.execute(update(Alert).where(Alert.id.in_(list(secret_of))).values(enabled=False))
    latencies.sort()
    return (f"{total / elapsed:.0f} events/s, {expected / elapsed:.0f} webhooks/s, commit-to-receipt "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
            f"CPU {cpu / expected * 1000:.2f} ms per webhook (the whole process: emitter, engine, receiver), "
            f"of it the engine's loop {spent['loop'] / expected * 1000:.2f} ms and its sending threads "
            f"{spent['send'] / expected * 1000:.2f} ms")


def _time_engine(engine: dispatch.Dispatcher) -> dict[str, float]:
    """The CPU time (time.thread_time) the engine's loop spends in its steps and its threads in sends."""
    spent, lock = {"loop": 0.0, "send": 0.0}, threading.Lock()
    step, send = engine.step, engine._send

    def timed_step(force_scan: bool = False) -> int:
        started = time.thread_time()
        try:
            return step(force_scan)
        finally:
            spent["loop"] += time.thread_time() - started

    def timed_send(job: dispatch.Job) -> None:
        started = time.thread_time()
        try:
            send(job)
        finally:
            with lock:
                spent["send"] += time.thread_time() - started
    engine.step, engine._send = timed_step, timed_send  # type: ignore[method-assign]
    return spent


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else ""
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    store, settings = _store(url)
    world = World(store, settings)
    owner = world.owner()
    inboxes = [(owner.tenant_id, world.inbox(owner)) for _ in range(10)]
    backend = store.engine.dialect.name
    print(f"{backend} fanout=1 (10 inboxes, one alert each): {run(store, settings, inboxes, 1, total)}", flush=True)
    print(f"{backend} fanout=10 (one inbox, ten alerts): {run(store, settings, inboxes[:1], 10, total // 10)}",
          flush=True)
    store.dispose()


if __name__ == "__main__":
    main()
