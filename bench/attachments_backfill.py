"""Attachments into the blob store (issue 19): the backfill on a store of N messages.

    PYTHONPATH=. .venv/bin/python bench/attachments_backfill.py DIR [--database-url URL]
        [--messages N] [--share 0.25] [--batch 200]

Makes a data dir (SQLite there by default, or the empty PostgreSQL database at URL), runs the
migrations, makes 10 tenants with 10 inboxes each through the real services, then bulk-inserts N
messages (default 1,000,000; threads and messages rows as inbound.py writes them, without raw
copies or search rows: the backfill reads neither) with SQLAlchemy Core. A share of them (default
25%) carries attachments the old way (bytes in `attachments.content`, no `blob_id`), as mail
received before migration 0039 does: 1 (70%), 2 (20%) or 3 (10%) each; 30% of attachments are one
of 40 recurring images per tenant (logos, signatures: the deduplicated ones), the rest random
bytes of a log-normal size (median 4 KiB, capped at 256 KiB; real attachments are larger, which
scales the byte-bound part: see the MB/s figure).

Then it times:
- the migration's one slow step on the loaded store: building the partial index
  `ix_attachments_unmoved` (0039's other steps only add a nullable or defaulted column);
- the backfill itself, as the worker runs it (`blobs.move_attachments`, one transaction per batch
  through the appliance's own Store sessions), printing rows/s, MB/s, and the longest and p99
  batch transaction: the time the write lock is held (on SQLite the one writer lock), during
  which mail waits; between batches it flows.
Keep DIR out of the repository (/work/bench-data).
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import statistics
import time
from pathlib import Path

from sqlalchemy import func, insert, select, text

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.ids import _encode
from appliance.models import Attachment, Blob, Message, Thread
from appliance.services.mail.message_rows import message_row
from appliance.services.mail.mime import parse_message
from appliance.services.workspace import blobs

TENANTS, INBOXES_PER_TENANT, BATCH, POOL = 10, 10, 5_000, 40


def settings_for(folder: Path, database_url: str) -> Settings:
    return Settings(data_dir=folder, database_url=database_url, secret_key="b" * 48, log_level="WARNING")


def new_id(prefix: str, millis: int, rng: random.Random) -> str:
    """An id as appliance.ids.new_id makes it, for a past arrival time (ids sort by time)."""
    return f"{prefix}_{_encode(millis, 10)}{_encode(rng.getrandbits(79), 16)}"


def make_inboxes(store: Store, settings: Settings) -> list[tuple[str, str]]:
    from tests.world import World

    world = World(store, settings)
    found = []
    for t in range(TENANTS):
        owner = world.owner(f"owner{t}@tenant{t}.example")
        found += [(owner.tenant_id, world.inbox(owner, f"agent{i}@t{t}.example.com")) for i in range(INBOXES_PER_TENANT)]
    return found


def attachment_bytes(rng: random.Random, pools: dict[str, list[bytes]], tenant_id: str) -> bytes:
    if rng.random() < 0.3:
        return rng.choice(pools[tenant_id])
    size = min(int(rng.lognormvariate(math.log(4096), 1.0)), 256 * 1024)
    return os.urandom(max(size, 16))


def load(store: Store, count: int, share: float) -> tuple[int, int]:
    """Bulk-insert count messages, share of them with old-style attachments; (attachments, bytes)."""
    rng = random.Random(20261206)
    inboxes = make_inboxes(store, store.settings)
    pools = {tenant: [os.urandom(rng.randint(2_000, 40_000)) for _ in range(POOL)] for tenant, _ in inboxes}
    parsed = parse_message(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: Invoice\r\n\r\nSee attached.\r\n")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=730)
    step = dt.timedelta(days=730) / count
    threads, messages, attachments, total, size = [], [], [], 0, 0
    for n in range(count):
        tenant_id, inbox_id = inboxes[rng.randrange(len(inboxes))]
        when = start + step * n
        millis = int(when.timestamp() * 1000)
        thread_id, message_id = new_id("thr", millis, rng), new_id("msg", millis, rng)
        threads.append({"id": thread_id, "tenant_id": tenant_id, "inbox_id": inbox_id, "subject": "Invoice",
                        "message_count": 1, "created_at": when, "last_message_at": when})
        messages.append(message_row(parsed, message_id=message_id, tenant_id=tenant_id, inbox_id=inbox_id,
                                    thread_id=thread_id, direction="inbound", status="received", size=2_000,
                                    now=when, is_read=True, received_at=when))
        if rng.random() < share:
            for k in range(rng.choices((1, 2, 3), (70, 20, 10))[0]):
                data = attachment_bytes(rng, pools, tenant_id)
                attachments.append({"id": new_id("att", millis, rng), "message_id": message_id,
                                    "filename": f"file{k}.bin", "content_type": "application/octet-stream",
                                    "size": len(data), "disposition": "attachment", "content_id": "",
                                    "content": data, "blob_id": None})
                total, size = total + 1, size + len(data)
        if len(messages) >= BATCH or n == count - 1:
            with store.engine.begin() as conn:
                conn.execute(insert(Thread.__table__), threads)
                conn.execute(insert(Message.__table__), messages)
                if attachments:
                    conn.execute(insert(Attachment.__table__), attachments)
            threads, messages, attachments = [], [], []
            if (n + 1) % 100_000 == 0:
                print(f"  {n + 1:,} messages loaded", flush=True)
    return total, size


def rebuild_index(store: Store) -> float:
    """Time the migration's index build on the loaded store (drop it, build it as 0039 does)."""
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_attachments_unmoved"))
    started = time.monotonic()
    with store.engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_attachments_unmoved ON attachments (id) WHERE blob_id IS NULL"))
    return time.monotonic() - started


def backfill(store: Store, batch: int) -> list[float]:
    """Run the worker's backfill to its end; each batch's transaction time in seconds."""
    times = []
    while True:
        started = time.monotonic()
        with store.session() as db:
            read = blobs.move_attachments(db, batch)
        times.append(time.monotonic() - started)
        if read < batch:
            return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=blobs.MOVE_BATCH)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(args.dir, args.database_url or f"sqlite:///{args.dir / 'gentbox.db'}")
    store = Store(settings)
    migrate(store.engine)
    started = time.monotonic()
    count, size = load(store, args.messages, args.share)
    print(f"loaded {args.messages:,} messages, {count:,} attachments ({size / 2**20:,.0f} MiB) "
          f"in {time.monotonic() - started:.0f}s", flush=True)
    print(f"migration 0039's index build on the loaded store: {rebuild_index(store):.2f}s", flush=True)
    started, cpu = time.monotonic(), time.process_time()
    times = backfill(store, args.batch)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    with store.session() as db:
        left = db.scalar(select(func.count()).select_from(Attachment).where(Attachment.blob_id.is_(None)))
        stored = db.execute(select(func.count(), func.coalesce(func.sum(Blob.size), 0))).one()
    quantiles = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
    print(f"backfill: {count:,} attachments in {elapsed:.0f}s = {count / elapsed:,.0f} rows/s, "
          f"{size / 2**20 / elapsed:.1f} MiB/s; {len(times):,} batches of {args.batch}: "
          f"p50 {statistics.median(times) * 1000:.0f} ms, p99 {quantiles[98] * 1000:.0f} ms, "
          f"longest {max(times) * 1000:.0f} ms; this process's CPU {cpu:.0f}s "
          f"({os.getloadavg()[0]:.1f} load average at the end)", flush=True)
    print(f"after: {left} attachments left unmoved; {stored[0]:,} blobs holding {stored[1] / 2**20:,.0f} MiB "
          f"(deduplicated per tenant)", flush=True)


if __name__ == "__main__":
    main()
