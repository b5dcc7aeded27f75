"""Issue 16.5, crash safety of a list's fan-out. `gentbox smtp` is killed with SIGKILL while it
stores mail to a three-member list: once at a known point inside the storing transaction, then at
random moments under load. Every message is stored in all three member inboxes or in none (the
copies are one transaction with the message), and the client saw 250 only when all three are
stored. The load and the server process are test_smtp_crash.py's.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from pathlib import Path

import os
import smtplib
import sqlite3

import psycopg
from sqlalchemy import select, text

from appliance.models import Message
from tests.integration.test_smtp_crash import message
from tests.integration.test_distribution_lists import team_of_three
from tests.integration.test_smtp_crash import Outcomes, Server, sender, smtp_env

BACKLOG = 150  # messages kept queued until every kill is done (then they drain undisturbed)
CONNECTIONS = 6
KILLS = 6  # then the rest of the load completes undisturbed (a restart is slow on a busy machine)
DEADLINE = 300  # seconds for the whole load: a safety net for a loaded machine


def _stalled_writer(database_url: str):
    """Hold the database so the listener's storing transaction cannot finish: on PostgreSQL a lock
    on message_raw (the transaction has written the copies' thread and message rows when it waits),
    on SQLite the write lock (the transaction waits at its BEGIN IMMEDIATE). Returns the holding
    connection and a function that is true once the listener waits on it."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn, None
    conn = psycopg.connect(database_url)
    conn.execute("LOCK TABLE message_raw IN EXCLUSIVE MODE")
    watcher = psycopg.connect(database_url, autocommit=True)

    def waiting() -> bool:
        return watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND query ILIKE '%message_raw%'").fetchone()[0] > 0
    return conn, waiting


def _sleeping_threads(pid: int) -> set[str]:
    """Threads of pid asleep in nanosleep: SQLite's busy handler, waiting for the write lock."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as wchan:
                if "nanosleep" in wchan.read():
                    found.add(tid)
        except OSError:
            continue
    return found


def _poll(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_kill_inside_the_storing_transaction_leaves_no_copy_and_no_250(world, store, settings,
                                                                        database_url: str, tmp_path: Path) -> None:
    _owner, members, _list_id = team_of_three(world)
    server = Server(smtp_env(tmp_path, database_url, settings), tmp_path)
    server.start()
    holder, waiting = _stalled_writer(database_url)
    try:
        baseline = _sleeping_threads(server.proc.pid)
        smtp = smtplib.SMTP("127.0.0.1", server.port, local_hostname="load.example", timeout=60)
        smtp.ehlo()
        assert smtp.mail("load@sender.example")[0] == 250 and smtp.rcpt("team@alpha.test")[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(message("k0001", "team@alpha.test") + b".\r\n")
        if waiting is None:
            _poll(lambda: _sleeping_threads(server.proc.pid) - baseline, "the committer to wait for SQLite's lock")
        else:
            _poll(waiting, "the storing transaction to wait on message_raw")
        server.kill()
        try:
            reply = smtp.getreply()
        except (OSError, smtplib.SMTPServerDisconnected):
            reply = None
        assert reply is None or reply[0] != 250, reply  # never 250 for what is not stored
        smtp.close()
    finally:
        holder.rollback() if waiting is not None else holder.execute("ROLLBACK")
        holder.close()
    with store.read_sessions() as db:
        assert db.execute(select(Message.id)).all() == []  # none of the three copies
    server.start()  # the client's retry: all three, and then its 250
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="load.example", timeout=60) as smtp:
        smtp.ehlo()
        smtp.mail("load@sender.example")
        smtp.rcpt("team@alpha.test")
        assert smtp.data(message("k0001", "team@alpha.test"))[0] == 250
    assert server.stop() == 0
    with store.read_sessions() as db:
        assert sorted(db.scalars(select(Message.inbox_id))) == sorted(members)


def test_a_kill_during_a_list_delivery_leaves_all_three_copies_or_none(world, store, settings,
                                                                       database_url: str, tmp_path: Path) -> None:
    _owner, members, _list_id = team_of_three(world)
    server = Server(smtp_env(tmp_path, database_url, settings), tmp_path)
    server.start()
    work: queue.Queue[str] = queue.Queue()
    put: set[str] = set()

    def top_up() -> None:
        """Keep work queued until every kill is done: a fast machine must not run dry before them."""
        while work.qsize() < BACKLOG:
            tag = f"l{len(put):04d}"
            put.add(tag)
            work.put(tag)

    top_up()
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
            top_up()
            server.kill()
            kills += 1
            server.start()
    finally:
        for thread in threads:
            thread.join(timeout=DEADLINE)
        assert server.stop() == 0

    assert kills >= 3, kills
    assert outcomes.accepted | outcomes.unknown == put
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
