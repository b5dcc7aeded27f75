"""Prepare a store for the API benchmark: an owner, a verified domain, an inbox, an agent token.

Prints the agent token. Run with the same GENTBOX_* environment as the server.
"""
from __future__ import annotations

import sys

from appliance.config import load_settings
from appliance.db import Store, migrate
from tests.world import World


def main() -> int:
    settings = load_settings()
    store = Store(settings)
    migrate(store.engine)
    world = World(store, settings)
    owner = world.owner("bench-owner@example.com")
    inbox_id = world.inbox(owner, "bench@bench.example.com")
    agent = world.agent(owner, inbox_id, ["email:read", "email:send"])
    print(agent.raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
