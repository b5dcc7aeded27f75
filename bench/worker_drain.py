"""How fast one delivery worker drains a full queue into Postfix's smtp-sink (issue 5).

Queues COUNT messages (5 KiB, DKIM-signed) through the real send service into a fresh SQLite
store, then times `Worker.run_until_idle()` relaying them to smtp-sink on loopback.
Usage: PYTHONPATH=. .venv/bin/python bench/worker_drain.py [COUNT]   (default 500)
"""
from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import tempfile
import time

from appliance import security
from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.models import Inbox
from appliance.services.identity.auth import authenticate
from appliance.services.mail import compose, outbound
from appliance.worker import Worker
from tests.world import World


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    security.set_password_cost(time_cost=1, memory_cost_kib=8)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "root", f"127.0.0.1:{port}", "256"])
    try:
        settings = Settings(data_dir=tempfile.mkdtemp(prefix="gentbox-drain-"), secret_key=secrets.token_urlsafe(48),
                            dns_servers="127.0.0.1:9", relay_host="127.0.0.1", relay_port=port, relay_tls="none")
        store = Store(settings)
        migrate(store.engine)
        world = World(store, settings)
        agent = world.sender(world.owner("owner@example.com"), "sender@send.example.com", scopes=("email:send",))
        with store.session() as db:
            principal, inbox = authenticate(db, agent.raw), db.get(Inbox, agent.inbox_id)
            for n in range(count):
                outbound.send(db, settings, principal, inbox, compose.SendRequest(
                    to=[compose.Recipient("bench@sink.example")], subject=f"Drain {n}", text_body=("x" * 75 + "\n") * 68))
        worker = Worker(store, settings)
        started = time.perf_counter()
        rows = worker.run_until_idle()
        elapsed = time.perf_counter() - started
        worker.close()
        print(f"{rows} queue rows (the messages and the owner's sign-up email) delivered in {elapsed:.2f} s "
              f"= {rows / elapsed:.1f} msg/s")
    finally:
        sink.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
