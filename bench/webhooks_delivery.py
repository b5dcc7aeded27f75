"""Webhook delivery throughput (issue 15): events per second from commit to a verified receipt on
loopback, with 10 alerts, on SQLite or PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/webhooks_delivery.py [DATABASE_URL] [EVENTS] [--single-process]

Ten inboxes with one webhook alert each (`fanout=1`: each event goes to one alert), then one inbox
with ten alerts (`fanout=10`: each event goes to all ten). An emitter commits EVENTS events
(default 2,000) in transactions of 10 while the delivery engine (the worker's Dispatcher, default
settings: 16 threads, 4 per alert) runs; a ThreadingHTTPServer on loopback
(tests/integration/webhook_receiver.py) verifies every request with the standardwebhooks package.

Layout, as deployed: the emitter (the API or SMTP listener committing events) and the receiver
(the customer's system) each run in a process of their own, so the measured process runs only the
delivery engine. `--single-process` runs all three in one process (one interpreter lock), the
layout of the benchmark before 2026-12-06 14:30 UTC, to compare with older figures.

Prints events/s and webhooks/s from the first commit to the last verified receipt, the
commit-to-receipt latency p50/p99 (CLOCK_MONOTONIC, shared by the processes), and the measured
process's CPU time per webhook (a figure the machine's other load changes far less than the
rate) with the engine's share: its loop's steps and its sending threads (thread CPU time).
Runs against any tree whose Dispatcher has `step` and `_send(job)` (PYTHONPATH picks the tree).
"""
from __future__ import annotations

import multiprocessing
import secrets
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from sqlalchemy import update

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.dns import Resolver
from appliance.models import Alert
from appliance.services.automation import dispatch
from tests.integration.webhook_receiver import make_alert
from tests.world import World

DEADLINE = 600.0  # seconds for one run before the bench gives up


def _settings(url: str, data_dir: str, secret_key: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key=secret_key, database_url=url, hostname="mail.bench.test",
                    webhook_allow_private=True, dns_servers="127.0.0.1:9", worker_poll_interval=0.05)


# --- the receiver (the customer's system) --------------------------------------------------------
def receive(conn: Any) -> None:
    """Serve on loopback, verify every request with its alert's secret (standardwebhooks), and
    report each webhook-id's first receipt time once `expected` distinct ones arrived."""
    import standardwebhooks

    import socketserver

    from tests.integration.webhook_receiver import Receiver
    # A customer's server listens with a real backlog: socketserver's 5 can overflow when 16
    # connections open at once (a reset, then a retry 5 s later, would be the figure).
    socketserver.TCPServer.request_queue_size = 128
    receiver = Receiver([])
    conn.send(receiver.url)
    secret_of, expected = conn.recv()
    verifier = {alert_id: standardwebhooks.Webhook(secret) for alert_id, secret in secret_of.items()}
    seen: dict[str, float] = {}
    lock, done = threading.Lock(), threading.Event()

    def behave(number, hit):  # noqa: ANN001, ANN202
        alert_id = "alr_" + hit.webhook_id.split("_alr_", 1)[1]
        verifier[alert_id].verify(hit.body, hit.headers)  # raises on a bad signature: no 2xx, retried
        with lock:
            seen.setdefault(hit.webhook_id, time.monotonic())
            if len(seen) >= expected:
                done.set()
        return 200, {}, 0.0
    receiver.behave = behave
    conn.send("ready")
    done.wait(DEADLINE)
    with lock:
        conn.send(dict(seen))
    receiver.stop()


# --- the emitter (the API, the SMTP listener) ----------------------------------------------------
def emit(conn: Any) -> None:
    """Commit the events in transactions of 10 when told to; report each one's commit time."""
    from appliance.services.automation import events
    url, data_dir, secret_key, inboxes, total = conn.recv()
    store = Store(_settings(url, data_dir, secret_key))
    conn.send("ready")
    conn.recv()  # go
    stamps: dict[str, float] = {}
    for start in range(0, total, 10):
        tenant_id, inbox_id = inboxes[(start // 10) % len(inboxes)]
        with store.session() as db:
            made = [events.emit(db, "message.updated", tenant_id=tenant_id, inbox_id=inbox_id, payload={"n": n})
                    for n in range(start, min(start + 10, total))]
        now = time.monotonic()
        for event in made:
            stamps[event.id] = now
    store.dispose()
    conn.send(stamps)


def _spawn(target: Any, single: bool) -> tuple[Any, Any]:
    """target(conn) in a process of its own (spawned: no forked engine or threads), or in a thread
    of this process with --single-process; returns (our end of the pipe, the process or thread)."""
    ours, theirs = multiprocessing.Pipe()
    if single:
        runner: Any = threading.Thread(target=target, args=(theirs,), daemon=True)
    else:
        runner = multiprocessing.get_context("spawn").Process(target=target, args=(theirs,), daemon=True)
    runner.start()
    return ours, runner


def _recv(conn: Any, what: str) -> Any:
    if not conn.poll(DEADLINE):
        raise SystemExit(f"the {what} did not answer in {DEADLINE:.0f} s")
    return conn.recv()


# --- one run -------------------------------------------------------------------------------------
def run(store: Store, settings: Settings, inboxes: list[tuple[str, str]], alerts_per_inbox: int, total: int,
        single: bool) -> str:
    to_receiver, receiver = _spawn(receive, single)
    to_emitter, emitter = _spawn(emit, single)
    target = _recv(to_receiver, "receiver")
    secret_of: dict[str, str] = {}
    with store.session() as db:
        for tenant_id, inbox_id in inboxes:
            for _ in range(alerts_per_inbox):
                alert, secret = make_alert(db, settings, tenant_id=tenant_id, inbox_id=inbox_id, target=target,
                                           events=["message.updated"])
                secret_of[alert.id] = secret
    expected = total * alerts_per_inbox
    to_receiver.send((secret_of, expected))
    to_emitter.send((settings.database_url, str(settings.data_dir), settings.secret_key, inboxes, total))
    _recv(to_receiver, "receiver"), _recv(to_emitter, "emitter")
    engine = dispatch.Dispatcher(store, settings, Resolver(settings), name="bench")
    spent = _time_engine(engine)
    stopping = threading.Event()
    thread = engine.start(stopping)
    cpu = time.process_time()
    to_emitter.send("go")
    stamps = _recv(to_emitter, "emitter")
    seen = _recv(to_receiver, "receiver")
    cpu = time.process_time() - cpu
    stopping.set()
    thread.join()
    engine.close()
    receiver.join(10), emitter.join(10)
    if len(seen) < expected:
        raise SystemExit(f"only {len(seen)} of {expected} webhooks verified in {DEADLINE:.0f} s")
    with store.session() as db:  # the next run's events must not also go to this run's stopped receiver
        db.execute(update(Alert).where(Alert.id.in_(list(secret_of))).values(enabled=False))
    elapsed = max(seen.values()) - min(stamps.values())
    # A receipt may beat the emitter's note of its commit time (by microseconds): 0.
    latencies = sorted(max(0.0, at - stamps[webhook_id[len("msg_"):].split("_alr_")[0]])
                       for webhook_id, at in seen.items())
    measured = "emitter, engine, receiver" if single else "the engine alone"
    return (f"{total / elapsed:.0f} events/s, {expected / elapsed:.0f} webhooks/s, commit-to-receipt "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
            f"CPU {cpu / expected * 1000:.2f} ms per webhook (the measured process: {measured}), "
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    single = "--single-process" in sys.argv
    url = args[0] if args else ""
    total = int(args[1]) if len(args) > 1 else 2000
    settings = _settings(url, tempfile.mkdtemp(), secrets.token_urlsafe(48))
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner()
    inboxes = [(owner.tenant_id, world.inbox(owner)) for _ in range(10)]
    backend = store.engine.dialect.name
    layout = "one process" if single else "engine alone"
    print(f"{backend} [{layout}] fanout=1 (10 inboxes, one alert each): "
          f"{run(store, settings, inboxes, 1, total, single)}", flush=True)
    print(f"{backend} [{layout}] fanout=10 (one inbox, ten alerts): "
          f"{run(store, settings, inboxes[:1], 10, total // 10, single)}", flush=True)
    store.dispose()


if __name__ == "__main__":
    main()
