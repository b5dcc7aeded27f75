"""The caps functions of the hot paths alone, per call, without and with caps (issue 22).

    PYTHONPATH=. .venv/bin/python bench/usage_caps_calls.py [DATABASE_URL]   # empty DB, or SQLite in a temp dir

`caps.charge_sends` (three levels capped, three windows each) and `caps.mailbox_quota` plus one
`admit` (a tenant and an inbox cap), each in its own transaction rolled back, 200 calls a round,
6 rounds of each alternated off/on; medians of wall and CPU milliseconds per call. What caps add
to one send or one received transaction, free of the rest of the path's noise on a busy machine.
"""
from __future__ import annotations

import inspect
import statistics
import time

import bench.usage_caps as b
from appliance.clock import utcnow
from appliance.services.governance import caps
from tests.world import World


def main() -> None:
    store, settings = b._store()
    world = World(store, settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.sender(owner, "sender@bench.example.com", scopes=("email:send",))
    now = utcnow()
    common = {"created_at": now, "updated_at": now, "alert_thresholds": [80, 95, 100], "mode": "enforce"}
    mailbox = [dict(id=f"cap_m{i}", tenant_id=owner.tenant_id, kind="mailbox", level=level, subject_id=subject,
                    limit_bytes=b.BIG * 100, **common)
               for i, (level, subject) in enumerate((("tenant", owner.tenant_id), ("inbox", inbox_id)))]
    sends = [dict(id=f"cap_s{i}", tenant_id=owner.tenant_id, kind="sends", level=level, subject_id=subject,
                  per_hour=b.BIG, per_day=b.BIG, per_month=b.BIG, **common)
             for i, (level, subject) in enumerate((("tenant", owner.tenant_id), ("inbox", agent.inbox_id),
                                                   ("token", agent.token_id)))]
    new = "inbox_ids" in inspect.signature(caps.mailbox_quota).parameters  # runs against older code too

    def send_once() -> None:
        with store.sessions() as db:
            caps.charge_sends(db, settings, tenant_id=owner.tenant_id, inbox_id=agent.inbox_id,
                              token_id=agent.token_id, count=1)
            db.rollback()

    def quota_once() -> None:
        with store.sessions() as db:
            quota = (caps.mailbox_quota(db, settings, {owner.tenant_id}, {inbox_id}) if new
                     else caps.mailbox_quota(db, settings, {owner.tenant_id}))
            if quota is not None:
                quota.admit([(owner.tenant_id, inbox_id)], 300, utcnow())
            db.rollback()

    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for _round in range(6):
        for on in (False, True):
            for name, rows, call in (("charge_sends", sends, send_once), ("mailbox_quota+admit", mailbox, quota_once)):
                b.set_caps(store, rows, on)
                started, cpu = time.perf_counter(), time.process_time()
                for _ in range(200):
                    call()
                results.setdefault((name, on), []).append(((time.perf_counter() - started) * 5,
                                                           (time.process_time() - cpu) * 5))  # ms per call
    backend = store.engine.dialect.name
    for name in ("charge_sends", "mailbox_quota+admit"):
        wall = [statistics.median(w for w, _c in results[(name, on)]) for on in (False, True)]
        cpu = [statistics.median(c for _w, c in results[(name, on)]) for on in (False, True)]
        print(f"{backend} {name}: off {wall[0]:.3f} ms ({cpu[0]:.3f} CPU), on {wall[1]:.3f} ms ({cpu[1]:.3f} CPU): "
              f"caps add {wall[1] - wall[0]:.3f} ms wall, {cpu[1] - cpu[0]:.3f} ms CPU per call")
    store.dispose()


if __name__ == "__main__":
    main()
