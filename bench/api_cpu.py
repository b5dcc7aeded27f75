"""CPU per call of the API's hot reads in process (no HTTP server, no profiler): a figure that a
loaded machine disturbs far less than requests/s, for before/after comparisons.

Usage: PYTHONPATH=. .venv/bin/python bench/api_cpu.py [DATABASE_URL]
Calls the WSGI app directly, access log on (to /dev/null, as JSON, as `gentbox web` writes it),
for GET /v1/users/me/ and GET /v1/messages/ (the first page of an inbox of BENCH_MESSAGES=1000
received messages); prints the smallest and the median CPU time per call of 8 batches each.
"""
from __future__ import annotations

import logging
import os
import secrets
import statistics
import sys
import tempfile
import time

from api.app import create_app
from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.logging_setup import setup_logging
from bench.setup_bench import _seed
from tests.world import World


def main() -> None:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 else "", rate_limit_token=10**9,
                        log_format="json")
    setup_logging(settings, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    logging.getLogger("gentbox.access").setLevel("INFO")
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner("cpu@example.com")
    inbox_id = world.inbox(owner, "cpu@cpu.example.com")
    agent = world.agent(owner, inbox_id, ["email:read"])
    _seed(store, inbox_id, int(os.environ.get("BENCH_MESSAGES", "1000")))
    app = create_app(settings, store)
    for path, calls in (("/v1/users/me/", 500), ("/v1/messages/", 100)):
        per_call = _measure(app, path, agent.auth, calls)
        print(f"GET {path}: CPU per call min {min(per_call):.3f} ms, median {statistics.median(per_call):.3f} ms")


def _measure(app, path: str, headers: dict[str, str], calls: int) -> list[float]:  # noqa: ANN001
    from werkzeug.test import EnvironBuilder
    environ = EnvironBuilder(path=path, headers=headers).get_environ()

    def call() -> None:
        statuses: list[str] = []
        body = app.wsgi_app(dict(environ), lambda status, _headers, _exc=None: statuses.append(status))
        b"".join(body)
        body.close()
        assert statuses[0].startswith("200"), statuses

    for _ in range(50):
        call()
    out = []
    for _ in range(8):
        started = time.process_time()
        for _ in range(calls):
            call()
        out.append((time.process_time() - started) / calls * 1000)
    return out


if __name__ == "__main__":
    main()
