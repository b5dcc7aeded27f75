"""Group commit: the listener's committer stores every message waiting for it in one transaction,
each message in its own savepoint, commits once, and only then answers: each session hears 250
for its own stored message, or why not (one failing message fails only itself). And several
`gentbox smtp` processes on one port keep the promise of the crash test."""
from __future__ import annotations

import concurrent.futures
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, update

import tests.integration.test_smtp_crash as crash
from appliance.models import Event, Inbox, Message, MessageSearch, Thread
from appliance.services.mail import inbound
from smtp.committer import Committer
from tests.integration.smtp_fixtures import message_bytes, stored


def incoming(inbox_id: str, subject: str, **extra) -> inbound.Incoming:
    raw = message_bytes(subject, "agent@hosted.example", message_id=extra.pop("message_id", None),
                        body=extra.pop("body", "Hello."))
    return inbound.prepare(inbox_ids=[inbox_id], raw=raw, envelope_from="a@sender.example",
                           envelope_to={inbox_id: "agent@hosted.example"}, **extra)


def count(store, model) -> int:
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_one_failing_message_fails_alone_and_the_others_of_its_batch_are_stored(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    paused = world.inbox(owner, "paused@hosted.example")
    with store.session() as db:
        db.execute(update(Inbox).where(Inbox.id == paused).values(status="paused"))
    batch = [incoming(inbox_id, "first", message_id="<first@sender.example>"),
             incoming(inbox_id, "unstorable", authentication={"spf": {"pass"}}),  # a set: not JSON
             incoming(paused, "for a paused inbox"),
             # answers the first, which is written in the same statement as itself
             inbound.prepare(inbox_ids=[inbox_id], envelope_from="a@sender.example", envelope_to={},
                             raw=b"From: b@sender.example\r\nSubject: Re: first\r\n"
                                 b"In-Reply-To: <first@sender.example>\r\n\r\nYes.\r\n")]
    with store.session() as db:
        outcomes = inbound.store(db, batch)
    first, unstorable, for_paused, reply = outcomes
    assert isinstance(unstorable, Exception) and isinstance(for_paused, inbound.RecipientChanged)
    assert reply[0].thread_id == first[0].thread_id
    rows = stored(store)
    assert [m.subject for m, _raw in rows] == ["first", "Re: first"]
    assert count(store, MessageSearch) == 2
    with store.read_sessions() as db:
        assert db.scalar(select(func.count()).where(Event.type == "message.received")) == 2
    with store.read_sessions() as db:
        [thread] = db.scalars(select(Thread)).all()
    assert thread.message_count == 2 and thread.id == first[0].thread_id


def test_sessions_hear_250_only_after_the_one_commit_of_their_batch(world, store, monkeypatch) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    gate, original = threading.Event(), inbound.store

    def slow_store(db, batch, **kw):  # the first batch takes its time: the others gather meanwhile
        gate.wait(30)
        return original(db, batch, **kw)

    monkeypatch.setattr(inbound, "store", slow_store)
    committer = Committer(store)
    try:
        futures = [committer.submit(incoming(inbox_id, f"m{n}")) for n in range(10)]
        time.sleep(0.3)
        assert not any(f.done() for f in futures)  # nobody hears anything before the commit
        gate.set()
        done = [f.result(timeout=30) for f in futures]
    finally:
        committer.close()
    assert len({stored_copy[0].id for stored_copy in done}) == 10 and count(store, Message) == 10
    assert len(commits) <= 2  # the first batch's commit, then one for all that waited


def test_a_failed_commit_fails_every_message_of_the_batch(world, store, monkeypatch) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    committer = Committer(store)
    original = inbound.store

    def store_then_fail_commit(db, batch, **kw):
        outcomes = original(db, batch, **kw)
        db.info["fail"] = True
        return outcomes

    def before_commit(db):
        if db.info.pop("fail", False):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(inbound, "store", store_then_fail_commit)
    event.listen(store.sessions, "before_commit", before_commit)
    try:
        futures = [committer.submit(incoming(inbox_id, f"m{n}")) for n in range(5)]
        errors = [f.exception(timeout=30) for f in futures]
    finally:
        committer.close()
        event.remove(store.sessions, "before_commit", before_commit)
    assert all(isinstance(e, OSError) for e in errors)
    assert count(store, Message) == 0


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "smtp", "--bind", "127.0.0.1",
                                 "--port", "0"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        if "listening on 127.0.0.1:" in text:
            return proc, int(text.split("listening on 127.0.0.1:", 1)[1].split()[0])
        assert proc.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(log.read_text())


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_several_listener_processes_share_the_port_and_stop_together(world, store, settings, database_url,
                                                                     tmp_path: Path) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    env = dict(crash.smtp_env(tmp_path, database_url, settings), GENTBOX_SMTP_PROCESSES="3")
    proc, port = _start(env, tmp_path / "smtp.log")
    try:
        children = _children(proc.pid)
        assert len(children) == 3

        def send(n: int) -> None:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as smtp:
                smtp.sendmail("a@sender.example", ["agent@hosted.example"],
                              message_bytes(f"parallel {n}", "agent@hosted.example"))

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            list(pool.map(send, range(60)))
        assert sorted(m.subject for m, _raw in stored(store)) == sorted(f"parallel {n}" for n in range(60))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "smtp.log").read_text()
    assert "Traceback" not in (tmp_path / "smtp.log").read_text()
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_a_killed_parent_takes_its_listener_processes_with_it(world, store, settings, database_url,
                                                              tmp_path: Path) -> None:
    env = dict(crash.smtp_env(tmp_path, database_url, settings), GENTBOX_SMTP_PROCESSES="2")
    proc, port = _start(env, tmp_path / "smtp.log")
    children = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{c}").exists() for c in children)
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)


def test_crash_safety_holds_with_several_listener_processes(world, store, settings, database_url,
                                                            tmp_path: Path, monkeypatch) -> None:
    """The crash test (tests/integration/test_smtp_crash.py) as it is, with three processes."""
    plain = crash.smtp_env
    monkeypatch.setattr(crash, "smtp_env", lambda *args: dict(plain(*args), GENTBOX_SMTP_PROCESSES="3"))
    crash.test_messages_answered_250_survive_sigkill_exactly_once(world, store, settings, database_url, tmp_path)
