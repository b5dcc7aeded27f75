"""Issue 16.5, crash safety of a list's fan-out: `gentbox smtp` is killed with SIGKILL at random
moments while mail to a three-member list streams in, and restarted. Every message is stored in
all three member inboxes or in none (the copies are one transaction with the message), and every
message answered 250 has all three. The load and the server are test_smtp_crash.py's.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select, text

from appliance.models import Message
from tests.integration.test_distribution_lists import team_of_three
from tests.integration.test_smtp_crash import Outcomes, Server, sender, smtp_env

MESSAGES = 60
CONNECTIONS = 6
KILLS = 6  # then the rest of the load completes undisturbed (a restart is slow on a busy machine)
DEADLINE = 300  # seconds for the whole load: a safety net for a loaded machine


def test_a_kill_during_a_list_delivery_leaves_all_three_copies_or_none(world, store, settings,
                                                                       database_url: str, tmp_path: Path) -> None:
    _owner, members, _list_id = team_of_three(world)
    server = Server(smtp_env(tmp_path, database_url, settings), tmp_path)
    server.start()
    work: queue.Queue[str] = queue.Queue()
    for number in range(MESSAGES):
        work.put(f"l{number:04d}")
    outcomes, deadline = Outcomes(), time.monotonic() + DEADLINE
    threads = [threading.Thread(target=sender, args=(server, "team@alpha.test", work, outcomes, deadline))
               for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    kills, rng = 0, random.Random()
    try:
        while kills < KILLS and any(t.is_alive() for t in threads):
            time.sleep(rng.uniform(0.1, 0.6))  # random kill moments, as test_smtp_crash.py
            if not any(t.is_alive() for t in threads):
                break
            server.kill()
            kills += 1
            server.start()
    finally:
        for thread in threads:
            thread.join(timeout=DEADLINE)
        assert server.stop() == 0

    assert kills >= 3, kills
    assert outcomes.accepted | outcomes.unknown == {f"l{n:04d}" for n in range(MESSAGES)}
    with store.read_sessions() as db:
        rows = db.execute(select(Message.message_id_header, Message.inbox_id)).all()
        if db.get_bind().dialect.name == "sqlite":
            assert db.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    copies = Counter(header.strip("<>").split("@")[0] for header, _inbox in rows)
    per_inbox = Counter((header, inbox) for header, inbox in rows)
    assert max(per_inbox.values()) == 1  # never twice in one inbox
    assert {inbox for _header, inbox in rows} <= set(members)
    partial = {tag: n for tag, n in copies.items() if n != 3}
    assert partial == {}, f"stored in some members only: {partial}"
    missing = sorted(tag for tag in outcomes.accepted if copies[tag] != 3)
    assert missing == [], f"answered 250 without every copy: {missing}"
    print(f"kills={kills} accepted={len(outcomes.accepted)} unanswered={len(outcomes.unknown)} "
          f"(stored {sum(1 for t in outcomes.unknown if copies[t])})")
