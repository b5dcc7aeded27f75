"""Issue 26 point 2: inbound as the appliance really runs. The worker's event readers no longer
keep the listener from committing: enrichment judges a batch on a read snapshot and holds the
write lock only to store the results and move its cursor; every reader's unit of work takes the
writer turn the listener's committer takes (the SQLite lock passes on at once); the sequences
reader skips received mail cheaply when no enrollment could end on a reply. Nothing is lost or
done twice: every message is judged once, in order, and a reply still ends an enrollment that
became exitable within the same batch."""
from __future__ import annotations

import fcntl
import itertools
import os
import sqlite3
from collections import Counter

from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from appliance.models import ActivityItem, Event, Message, SequenceEnrollment
from appliance.services.intelligence import activity, enrich, phishing
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.test_sequences import _contact, _enrollment, _sequence, setup  # noqa: F401

_n = itertools.count(1)


def _note(address: str, sender: str = "sam@partner.example") -> bytes:
    n = next(_n)
    return (f"From: Sam <{sender}>\r\nTo: {address}\r\nSubject: Note {n}\r\nMessage-ID: <note.{n}@partner.example>\r\n"
            f"\r\nCan we meet next Tuesday at 12:30 for lunch? ({n})\r\n").encode()


def _receive(store, inbox_id: str, raw: bytes, sender: str = "sam@partner.example") -> str:
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from=sender,
                                   envelope_to={inbox_id: "desk@x.example"})
        return stored.id


def _enriched(store) -> Counter:
    with store.session() as db:
        return Counter(db.scalars(select(Event.resource_id).where(Event.type == "message.enriched")))


def _sqlite_path(store) -> str | None:
    return store.engine.url.database if store.engine.dialect.name == "sqlite" else None


def test_enrichment_judges_while_another_writer_can_commit(world, store, settings, monkeypatch) -> None:
    """While the rules run, the database's write lock is free (on SQLite: another connection
    takes it at once); before, the whole batch was judged inside the worker's write transaction."""
    inbox_id = world.inbox(world.owner())
    ids = [_receive(store, inbox_id, _note("desk@x.example")) for _ in range(3)]
    path, free = _sqlite_path(store), []
    assess = phishing.assess

    def probing(*args, **kwargs):  # noqa: ANN002, ANN003
        if path:
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                free.append(True)
            except sqlite3.OperationalError:
                free.append(False)
            finally:
                other.close()
        return assess(*args, **kwargs)
    monkeypatch.setattr(phishing, "assess", probing)
    worker = Worker(store, settings)
    try:
        assert worker.enrich_received() >= 3
    finally:
        worker.close()
    assert free == ([True] * 3 if path else [])
    assert _enriched(store) == Counter({m: 1 for m in ids})
    with store.session() as db:
        assert all(db.get(Message, m).enrichment["phishing"]["verdict"] == "safe" for m in ids)


def test_mail_stored_between_judging_and_storing_is_judged_by_the_next_pass(world, store, settings,
                                                                            monkeypatch) -> None:
    inbox_id = world.inbox(world.owner())
    first = [_receive(store, inbox_id, _note("desk@x.example")) for _ in range(2)]
    late: list[str] = []
    plan = enrich.plan

    def plan_then_receive(db, **kwargs):  # noqa: ANN001, ANN003
        planned = plan(db, **kwargs)
        if not late:  # a message committed by the listener after the snapshot was read
            late.append(_receive(store, inbox_id, _note("desk@x.example")))
        return planned
    monkeypatch.setattr(enrich, "plan", plan_then_receive)
    worker = Worker(store, settings)
    try:
        worker.enrich_received()
        assert _enriched(store) == Counter({m: 1 for m in first})  # the late one is not lost...
        worker.enrich_received()
    finally:
        worker.close()
    assert _enriched(store) == Counter({m: 1 for m in [*first, *late]})  # ...nor judged twice
    with store.session() as db:
        assert enrich.backlog(db) == 0


def test_a_batch_another_worker_stored_first_is_stored_once(world, store) -> None:
    inbox_id = world.inbox(world.owner())
    ids = [_receive(store, inbox_id, _note("desk@x.example")) for _ in range(3)]
    with store.read_sessions() as db:
        mine = enrich.plan(db)
    with store.read_sessions() as db:
        theirs = enrich.plan(db)
    with store.session() as db:
        assert enrich.apply(db, theirs) == theirs.read > 0
    with store.session() as db:
        assert enrich.apply(db, mine) == 0  # the cursor moved: nothing written
    assert _enriched(store) == Counter({m: 1 for m in ids})


def test_event_readers_take_the_writer_turn_of_the_listeners_committer(world, store, settings,
                                                                       monkeypatch) -> None:
    """On SQLite the activity projector (like every event reader of the worker) holds the
    committer's writer turn while it writes, so the lock passes between them at once."""
    inbox_id = world.inbox(world.owner())
    message_id = _receive(store, inbox_id, _note("desk@x.example"))
    held: list[bool] = []
    apply_event = activity.apply_event

    def probing(graph, event, own):  # noqa: ANN001
        if store._writer_lock:
            fd = os.open(store._writer_lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
            finally:
                os.close(fd)
        return apply_event(graph, event, own)
    monkeypatch.setattr(activity, "apply_event", probing)
    worker = Worker(store, settings)
    try:
        assert worker.project_activity() >= 1
    finally:
        worker.close()
    assert held and all(held) if _sqlite_path(store) else not held
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Message).where(Message.id == message_id)) == 1


def test_sequences_skip_mail_only_while_no_enrollment_can_end(setup, client, store) -> None:  # noqa: F811
    """Mail read while no enrollment could end on a reply is skipped cheaply; a step sent in the
    same batch makes the enrollment exitable, and the reply after it in that batch still ends it."""
    agent, _receiver, worker = setup
    sequence_id, contact_id = _sequence(client, agent), _contact(client, agent)
    _receive(store, agent.inbox_id, _note("sales@seq.test", "carol@remote.test"), "carol@remote.test")
    enrolled = client.post(f"/v1/sequences/{sequence_id}/enrollments/", json={"contact_id": contact_id},
                           headers=agent.auth)
    assert enrolled.status_code == 201, enrolled.get_json()
    assert worker.fire_schedule() >= 1  # step 1's event, read in the same batch as the mail around it
    _receive(store, agent.inbox_id, _note("sales@seq.test", "carol@remote.test"), "carol@remote.test")
    assert worker.run_sender_automation() >= 3
    ended = _enrollment(client, agent, sequence_id)
    assert (ended["status"], ended["exit_reason"], ended["next_step"]) == ("exited", "replied", 1)
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(SequenceEnrollment)
                         .where(SequenceEnrollment.status == "active")) == 0


def test_readers_load_the_batchs_messages_inboxes_and_tenants_once(world, store, settings) -> None:
    """The tailer loads the rows a batch's events name in one query per table (not one per event),
    and every reader still handles every event: each message gets its activity row."""
    inboxes = [world.inbox(world.owner()) for _ in range(2)]
    ids = [_receive(store, inboxes[n % 2], _note("desk@x.example")) for n in range(6)]
    selects: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        head = statement.split(" WHERE ", 1)[0]
        selects.extend(t for t in ("messages", "inboxes", "tenants")
                       if statement.startswith("SELECT") and f"FROM {t}" in head)
    sa_event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.session() as db:
            assert activity.project(db) >= 6
    finally:
        sa_event.remove(store.engine, "before_cursor_execute", count)
    assert Counter(selects)["messages"] <= 2 and Counter(selects)["inboxes"] <= 2, Counter(selects)
    with store.session() as db:
        assert {a.resource_id for a in db.scalars(select(ActivityItem))} >= set(ids)
