"""Where one GET /v1/users/me/ spends its CPU: cProfile over 2,000 in-process calls.

Usage: PYTHONPATH=. .venv/bin/python bench/profile_users_me.py [DATABASE_URL]
Prints the time per call and the top functions by own time.
"""
from __future__ import annotations

import cProfile
import pstats
import secrets
import sys
import tempfile
import time

from api.app import create_app
from appliance.config import Settings
from appliance.db import Store, migrate
from tests.world import World


def main() -> None:
    settings = Settings(data_dir=tempfile.mkdtemp(), secret_key=secrets.token_urlsafe(48),
                        database_url=sys.argv[1] if len(sys.argv) > 1 else "",
                        rate_limit_token=10**9)
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner("profile@example.com")
    agent = world.agent(owner, world.inbox(owner, "p@profile.example.com"), ["email:read"])
    client = create_app(settings, store).test_client()
    for _ in range(200):
        client.get("/v1/users/me/", headers=agent.auth)
    calls = 2000
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(calls):
        client.get("/v1/users/me/", headers=agent.auth)
    profiler.disable()
    print(f"{(time.perf_counter() - start) / calls * 1000:.2f} ms per call (under the profiler)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
