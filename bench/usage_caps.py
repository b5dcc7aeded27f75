"""What metering and caps cost on the hot paths (issue 22), on SQLite or PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/usage_caps.py [DATABASE_URL] [ROUNDS]   # empty DB, or SQLite in a temp dir

1. inbound: small messages through `inbound.store` (the SMTP committer's one function) in
   transactions of 50 (group commit; 1,000 a round) and of 1 (150 a round); messages per second,
   without any cap and with a mailbox cap (tenant and inbox, enforce) on the receiving inbox.
   Metering is always on.
2. send: POST /v1/messages/ through the real WSGI app served by a threaded HTTP server, 4 client
   threads, 80 sends a round; requests per second without caps and with send caps on all three
   levels (tenant, inbox, token; per hour, day and month, high enough never to bind).
Short rounds alternate (off, on, off, on, ...; ROUNDS of each, default 6) so that a busy machine
slows both alike. Shown per setting: the median rate of its rounds, this process's CPU time per
message or request (median; on SQLite the database's work is in it, on PostgreSQL the server's
is not), and "on vs off": the medians' difference (negative: caps on is slower).
"""
from __future__ import annotations

import logging
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from werkzeug.serving import make_server

from api.app import create_app
from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.models import UsageCap
from appliance.services.mail import inbound
from tests.world import World

MESSAGE = (b"From: Ann <ann@example.org>\r\nTo: bot@x.example.com\r\nSubject: hello %d\r\n"
           b"Message-ID: <%d.%s@example.org>\r\n\r\nA short note, number %d.\r\n")
BIG = 10 ** 9


def _store() -> tuple[Store, Settings]:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 else "", rate_limit_token=10 ** 8)
    store = Store(settings)
    migrate(store.engine)
    return store, settings


def bench_inbound(store: Store, inbox_id: str, batch: int, total: int) -> tuple[float, float]:
    """Messages per second and CPU milliseconds per message of one round."""
    run = secrets.token_hex(4).encode()
    prepared = [inbound.prepare(inbox_ids=[inbox_id], raw=MESSAGE % (i, i, run, i), envelope_from="ann@example.org",
                                envelope_to={}) for i in range(total)]
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, total, batch):
        with store.writer_turn(), store.session() as db:
            inbound.store(db, prepared[start:start + batch], settings=store.settings)
    return total / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / total


def bench_send(url: str, token: str, threads: int = 4, each: int = 20) -> tuple[float, float]:
    """Requests per second and CPU milliseconds per request (server and clients) of one round."""
    body = {"to": [{"email": "someone@example.org"}], "subject": "bench", "text_body": "x" * 2000}

    def work(_: int) -> None:
        with requests.Session() as http:
            for _ in range(each):
                resp = http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
                assert resp.status_code == 201, resp.text
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return threads * each / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / (threads * each)


def set_caps(store: Store, rows: list[dict], on: bool) -> None:
    with store.session() as db:
        db.query(UsageCap).delete()
        if on:
            db.add_all(UsageCap(**row) for row in rows)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    store, settings = _store()
    world = World(store, settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.sender(owner, "sender@bench.example.com", scopes=("email:send",))
    now = __import__("appliance.clock", fromlist=["utcnow"]).utcnow()
    common = {"created_at": now, "updated_at": now, "alert_thresholds": [80, 95, 100], "mode": "enforce"}
    mailbox = [dict(id=f"cap_m{i}", tenant_id=owner.tenant_id, kind="mailbox", level=level, subject_id=subject,
                    limit_bytes=BIG * 100, **common)
               for i, (level, subject) in enumerate((("tenant", owner.tenant_id), ("inbox", inbox_id)))]
    sends = [dict(id=f"cap_s{i}", tenant_id=owner.tenant_id, kind="sends", level=level, subject_id=subject,
                  per_hour=BIG, per_day=BIG, per_month=BIG, **common)
             for i, (level, subject) in enumerate((("tenant", owner.tenant_id), ("inbox", agent.inbox_id),
                                                   ("token", agent.token_id)))]
    backend = store.engine.dialect.name
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    results: dict[str, list[tuple[float, float]]] = {}
    for on in (False, True) * rounds:
        set_caps(store, mailbox, on)
        for batch, total in ((50, 1000), (1, 150)):
            results.setdefault(f"inbound batch={batch} caps={'on' if on else 'off'}", []).append(
                bench_inbound(store, inbox_id, batch, total))
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/v1/messages/"
    try:
        bench_send(url, agent.raw, each=10)  # warm up
        for on in (False, True) * rounds:
            set_caps(store, sends, on)
            results.setdefault(f"POST /v1/messages/ caps={'on' if on else 'off'}", []).append(bench_send(url, agent.raw))
    finally:
        server.shutdown()
    report(backend, results)
    store.dispose()


def report(backend: str, results: dict[str, list[tuple[float, float]]]) -> None:
    """One line per setting, then each path's on-vs-off difference of the medians."""
    for name, values in results.items():
        rates = [rate for rate, _cpu in values]
        print(f"{backend} {name}: median {statistics.median(rates):.0f}/s, "
              f"{statistics.median(cpu for _rate, cpu in values):.2f} ms CPU each "
              f"(rounds: {', '.join(f'{v:.0f}' for v in rates)})")
    for name in [n[:-len(" caps=off")] for n in results if n.endswith("caps=off")]:
        off, on = results[f"{name} caps=off"], results[f"{name} caps=on"]
        rate = statistics.median(r for r, _c in on) / statistics.median(r for r, _c in off) - 1
        cpu = statistics.median(c for _r, c in off) / statistics.median(c for _r, c in on) - 1
        print(f"{backend} {name}: on vs off {100 * rate:+.1f}% rate, {100 * cpu:+.1f}% CPU per item (as a rate)")


if __name__ == "__main__":
    main()
