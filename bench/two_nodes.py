"""Two nodes against one node on the same PostgreSQL (issue 26): inbound and outbound msg/s.

On one fresh PostgreSQL database, starts ONE node (`gentbox smtp`, `web`, `worker` and `imap` as
real processes with a data dir of their own: tests/integration/two_nodes.py) and measures
  inbound:  N messages (2 KiB) into its listener from SENDERS concurrent SMTP sessions, until
            every one is answered 250 (which the listener says only once the message is stored);
  outbound: M sends through its API (8 client threads) until a remote aiosmtpd MX has them all;
then stops it and does the same with TWO nodes, the sessions and sends split across both. Each
run measures both settings back to back; odd runs start with one node, even runs with two, so
the machine's drift falls on both. Every node has one SMTP process and two web workers.

Usage: PYTHONPATH=. .venv/bin/python bench/two_nodes.py [--inbound 2000] [--outbound 1000]
           [--senders 8] [--runs 1] [--admin-url postgresql://…/postgres]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from appliance import security
from appliance.config import Settings
from appliance.db import Store
from appliance.models import Inbox, Message
from appliance.services import register_handlers
from tests.dnsserver import DnsServer
from tests.integration.remote_mail import RemoteWorld
from tests.integration.test_two_nodes import send_through, smtp_into
from tests.integration.two_nodes import HOSTNAME, Node, node_env, start_nodes
from tests.world import World
from tests.postgres import create_database, drop_database

ADMIN_URL = "postgresql://gentbox_test:gentbox_test@127.0.0.1:5432/postgres"
PARTNER = "partner.example"


def fresh_database(admin_url: str) -> tuple[str, str]:
    """A new migrated database on the server: (its name, its URL)."""
    name = f"gentbox_bench_nodes_{os.getpid()}"
    return name, create_database(admin_url, name)


def stored(store: Store, inbox_id: str) -> int:
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(Message).where(
            Message.inbox_id == inbox_id, Message.direction == "inbound"))


def measure(names: tuple[str, ...], root: Path, env: dict[str, str], world: World, receiver,  # noqa: ANN001
            args: argparse.Namespace) -> dict[str, float]:
    """Start the named nodes, time the inbound then the outbound load through them, stop them."""
    owner = world.owner()
    inbox_id, agent = world.inbox(owner), world.sender(owner)  # fresh ones: no key or ID seen before
    with world.store.read_sessions() as db:
        address = db.get(Inbox, inbox_id).address
    root.mkdir()
    (root / "logs").mkdir()
    started: list[Node] = []
    try:
        nodes = start_nodes(names, root, root / "logs", env, started)
        load = os.getloadavg()[0]
        began = time.monotonic()
        accepted = smtp_into(nodes, address, args.inbound, sessions=args.senders)
        inbound = time.monotonic() - began
        assert len(accepted) == args.inbound == stored(world.store, inbox_id), "inbound: not all stored"
        receiver.clear()
        began = time.monotonic()
        send_through(nodes, agent, args.outbound)
        receiver.wait_for(args.outbound, timeout=1200)
        outbound = time.monotonic() - began
        return {"inbound": args.inbound / inbound, "outbound": args.outbound / outbound,
                "load": (load + os.getloadavg()[0]) / 2}
    finally:
        for node in started:
            node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inbound", type=int, default=2000)
    parser.add_argument("--outbound", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--admin-url", default=os.environ.get("GENTBOX_TEST_POSTGRES_URL", ADMIN_URL))
    args = parser.parse_args()
    security.set_password_cost(time_cost=1, memory_cost_kib=8)  # the bench's own logins; nodes keep theirs
    register_handlers()
    workdir = Path(tempfile.mkdtemp(prefix="gentbox-two-nodes-"))
    name, url = fresh_database(args.admin_url)
    dns = DnsServer(workdir, zones=("test", "example")).start()
    remote = RemoteWorld(dns, workdir / "remote").start(receivers=1)
    store = None
    try:
        settings = Settings(data_dir=workdir, database_url=url, secret_key=secrets.token_urlsafe(48),
                            hostname=HOSTNAME, dns_servers="127.0.0.1:9", rate_limit_token=100_000)
        store = Store(settings)
        world = World(store, settings)
        receiver = remote.receivers[0]
        remote.domain(PARTNER, mx=[(10, receiver)])
        env = node_env(settings, remote)
        print(f"database {name}; {args.inbound} messages in over {args.senders} sessions, "
              f"{args.outbound} API sends out")
        results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for run in range(1, args.runs + 1):
            order = (1, 2) if run % 2 else (2, 1)
            for count in order:
                names = ("a", "b")[:count]
                figures = measure(names, workdir / f"run{run}-{count}", env, world, receiver, args)
                results[count].append(figures)
                print(f"run {run}, {count} node(s): inbound {figures['inbound']:.1f} msg/s, "
                      f"outbound {figures['outbound']:.1f} msg/s (load average {figures['load']:.1f})",
                      flush=True)
            one, two = results[1][-1], results[2][-1]
            print(f"run {run}, two/one: inbound {two['inbound'] / one['inbound']:.2f}x, "
                  f"outbound {two['outbound'] / one['outbound']:.2f}x", flush=True)
    finally:
        if store is not None:
            store.dispose()
        remote.stop()
        dns.stop()
        drop_database(args.admin_url, name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
