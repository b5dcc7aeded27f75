"""Prepare a store for the sending benchmark: an owner, a verified domain with an active DKIM
key, an inbox and an agent token with email:send. Prints the token.

Run with the same GENTBOX_* environment as the server.
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
    owner = world.owner("send-owner@example.com")
    agent = world.sender(owner, "sender@send.example.com", scopes=("email:send",))
    store.dispose()
    print(agent.raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
