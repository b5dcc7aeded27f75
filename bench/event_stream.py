"""The live event stream under gunicorn (issue 15 point 5): does holding 20 open streams slow
ordinary requests, and how long from an event's commit to its arrival on every stream.

    PYTHONPATH=. .venv/bin/python bench/event_stream.py [DATABASE_URL]   # an empty DB; default SQLite in a temp dir

Starts `gentbox web` (2 workers; GENTBOX_EVENT_STREAM_MAX_PER_PROCESS=12, so each worker runs
4 + 12 threads), then:
1. `GET /v1/users/me/` from CONNS (default 20) keep-alive connections for DURATION (default 10) s,
   no stream open: requests/s, p50, p99.
2. The same with 20 streams open, while this process commits EVENTS_PER_S (default 10) events/s
   that every stream gets (each event wakes all 20 streams: 20 reads of the store); with
   EVENTS_ELSEWHERE=1 they go to another inbox (the streams wake but skip their reads).
3. Commit-to-stream latency: 200 events committed one every 50 ms; for each, the time from the
   return of its commit to its arrival on each of the 20 streams (4,000 samples): p50, p99, max.
4. SIGTERM with the 20 streams open: how long until gunicorn has exited (streams end cleanly).
The load generator is Python threads in this process (on the same two cores as the server), so
compare the runs with each other rather than with the wrk figures above.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time

STREAMS = 20
DURATION = float(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "20"))
RATE = float(os.environ.get("EVENTS_PER_S", "10"))  # events committed per second during run 2 (0: none)
ELSEWHERE = os.environ.get("EVENTS_ELSEWHERE") == "1"  # run 2's events go to another inbox of the tenant


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment() -> dict[str, str]:
    env = {"GENTBOX_DATA_DIR": tempfile.mkdtemp(), "GENTBOX_SECRET_KEY": secrets.token_urlsafe(48),
           "GENTBOX_HTTP_PORT": str(_free_port()), "GENTBOX_RATE_LIMIT_TOKEN": "100000000",
           "GENTBOX_RATE_LIMIT_IP": "100000000", "GENTBOX_WEB_WORKERS": "2",
           "GENTBOX_EVENT_STREAM_MAX_PER_PROCESS": "12", "GENTBOX_EVENT_STREAM_MAX_PER_TOKEN": str(STREAMS)}
    if len(sys.argv) > 1:
        env["GENTBOX_DATABASE_URL"] = sys.argv[1]
    return env


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return f"p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {ordered[-1] * 1000:.1f} ms (n={len(ordered)})"


def load(port: int, token: str) -> list[float]:
    """GET /v1/users/me/ from CONNS threads for DURATION seconds; every request's latency."""
    latencies: list[float] = []
    stop = time.monotonic() + DURATION

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            started = time.monotonic()
            conn.request("GET", "/v1/users/me/", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            mine.append(time.monotonic() - started)
        latencies.extend(mine)
    threads = [threading.Thread(target=worker) for _ in range(CONNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


class StreamReader(threading.Thread):
    """One open stream; records when each event (by resource id) arrived, and when it ended."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.arrived: dict[str, float] = {}
        self.ended: float | None = None
        while True:  # the kernel picks the worker: a full one answers 429, try again
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            self.conn.request("GET", "/v1/events/stream/", headers={"Authorization": f"Bearer {token}"})
            self.resp = self.conn.getresponse()
            if self.resp.status == 200:
                break
            self.resp.read()
            self.conn.close()
            time.sleep(0.05)
        self.start()

    def run(self) -> None:
        while line := self.resp.readline():
            if line.startswith(b"data: "):
                self.arrived[json.loads(line[6:])["resource_id"]] = time.monotonic()
        self.ended = time.monotonic()


def stream_readers(port: int, token: str, pipe) -> None:  # noqa: ANN001
    """In a process of its own (the readers must not take the load generator's GIL): open the
    streams, say so, and on each request send back what arrived so far (CLOCK_MONOTONIC is one
    clock for all processes of the machine)."""
    readers = [StreamReader(port, token) for _ in range(STREAMS)]
    pipe.send("open")
    while pipe.recv() == "report":
        pipe.send([(dict(r.arrived), r.ended) for r in readers])


def emit(store, owner, inbox_id: str, resource: str) -> float:  # noqa: ANN001
    from appliance.services.automation import events
    with store.session() as db:
        events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id, resource_id=resource)
    return time.monotonic()


def main() -> int:
    env = _environment()
    os.environ.update(env)
    from appliance.config import load_settings
    from appliance.db import Store, migrate
    from tests.world import World

    settings = load_settings()
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner("bench-owner@example.com")
    agent = world.agent(owner, world.inbox(owner, "bench@bench.example.com"), ["email:read"])
    busy_inbox = world.inbox(owner, "other@bench.example.com") if ELSEWHERE else agent.inbox_id
    port = int(env["GENTBOX_HTTP_PORT"])
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gentbox"), "web"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/v1/openapi.json")
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(2):  # warm-up (connections, caches; on a fresh PostgreSQL database, autovacuum's first pass)
            load(port, agent.raw)
        base = load(port, agent.raw)
        print(f"users/me, no stream:       {len(base) / DURATION:.0f} req/s, {_percentiles(base)}")

        here, there = multiprocessing.Pipe()
        child = multiprocessing.Process(target=stream_readers, args=(port, agent.raw, there), daemon=True)
        child.start()
        assert here.recv() == "open"

        def report() -> list[tuple[dict[str, float], float | None]]:
            here.send("report")
            return here.recv()
        running = threading.Event()
        running.set()

        def background_events() -> None:
            n = 0
            while running.is_set() and RATE > 0:
                emit(store, owner, busy_inbox, f"bg_{n}")
                n += 1
                time.sleep(1 / RATE)
        emitter = threading.Thread(target=background_events, daemon=True)
        emitter.start()
        loaded = load(port, agent.raw)
        running.clear()
        emitter.join()
        print(f"users/me, {STREAMS} streams open, {RATE:g} events/s{' elsewhere' if ELSEWHERE else ''}: {len(loaded) / DURATION:.0f} req/s, {_percentiles(loaded)}")
        print(f"  p99 ratio (streams / none): {sorted(loaded)[int(0.99 * len(loaded))] / sorted(base)[int(0.99 * len(base))]:.2f}")

        committed = {}
        for i in range(200):
            committed[f"lat_{i}"] = emit(store, owner, agent.inbox_id, f"lat_{i}")
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(key in got for got, _ in report() for key in committed):
            time.sleep(0.05)
        samples = [got[key] - at for got, _ in report() for key, at in committed.items() if key in got]
        missing = STREAMS * len(committed) - len(samples)
        print(f"commit to stream ({STREAMS} streams x 200 events): {_percentiles(samples)}; missing {missing}")

        started = time.monotonic()
        server.terminate()
        server.wait(timeout=60)
        exited = time.monotonic() - started
        ends = [ended - started for _, ended in report() if ended is not None]
        print(f"SIGTERM with {STREAMS} streams open: {len(ends)} streams ended by the server, the last "
              f"{max(ends):.2f} s after it; gunicorn exited in {exited:.1f} s")
        here.send("stop")
    finally:
        if server.poll() is None:
            server.kill()
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
