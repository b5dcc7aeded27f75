"""Events in commit order (issue 14 point 12): `seq` increases in commit order, so a reader paging
with `after=` never misses an event whose transaction started first and committed last; events
carry an actor and a category; a rolled-back transaction leaves none; old ones are purged."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, text

from appliance import clock
from appliance.models import Event
from appliance.services.automation import events
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.helpers import alembic

WAIT = 30  # seconds any step may take before the test fails (a deadline, never a sleep)


def _poll(client, auth: dict, after: str | int | None) -> list[dict]:  # noqa: ANN001
    resp = client.get("/v1/events/", headers=auth,
                      query_string={"limit": 200} | ({"after": after} if after is not None else {}))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["results"]


def _begin(db, backend: str) -> None:  # noqa: ANN001
    """Start the transaction for real. PostgreSQL: take an xid now (so the first transaction is
    also the older one by xid). SQLite: any statement would take the one write lock (BEGIN
    IMMEDIATE) and the second writer could not commit first at all; the ids are made now anyway."""
    if backend == "postgres":
        db.execute(text("SELECT pg_current_xact_id()"))


def test_a_reader_never_misses_the_event_that_committed_second_but_started_first(client, world, store, backend):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read"])
    seen = _poll(client, reader.auth, None)
    made: dict[str, str] = {}
    first_emitted, second_committed, reader_polled = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def first() -> None:  # starts first, commits last
        try:
            with store.session() as db:
                _begin(db, backend)
                made["first"] = events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                            resource_id="msg_first").id
                first_emitted.set()
                assert reader_polled.wait(WAIT)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            first_emitted.set()

    def second() -> None:
        try:
            assert first_emitted.wait(WAIT)
            with store.session() as db:
                _begin(db, backend)
                made["second"] = events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                             resource_id="msg_second").id
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            second_committed.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert second_committed.wait(WAIT) and not failures, failures
    # The reader polls while the first transaction is still open: it sees the second event only.
    page = _poll(client, reader.auth, seen[-1]["event_id"])
    assert [e["resource_id"] for e in page] == ["msg_second"]
    reader_polled.set()
    for thread in threads:
        thread.join(WAIT)
    assert not failures, failures
    assert made["first"] < made["second"]  # ids in the order of start...

    # ...and the next poll, from where the reader stopped (the event id form clients used, or the
    # seq), gets the event that committed after it: nothing is missed.
    late = _poll(client, reader.auth, page[-1]["event_id"])
    assert [(e["event_id"], e["resource_id"]) for e in late] == [(made["first"], "msg_first")]
    assert _poll(client, reader.auth, page[-1]["seq"]) == late
    assert late[0]["seq"] > page[-1]["seq"]
    everything = _poll(client, reader.auth, None)
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)


def test_events_of_a_rolled_back_transaction_or_savepoint_never_appear(store):
    with pytest.raises(RuntimeError), store.session() as db:
        events.emit(db, "inbox.created", tenant_id="tnt_x", inbox_id="inb_x", resource_id="inb_gone")
        raise RuntimeError("the change fails")
    with store.session() as db:
        kept = events.emit(db, "inbox.created", tenant_id="tnt_x", inbox_id="inb_x", resource_id="inb_kept")
        with pytest.raises(RuntimeError), db.begin_nested():
            events.emit(db, "inbox.deleted", tenant_id="tnt_x", inbox_id="inb_x", resource_id="inb_savepoint")
            raise RuntimeError("the savepoint fails")
        with db.begin_nested():
            events.emit(db, "inbox.deleted", tenant_id="tnt_x", inbox_id="inb_x", resource_id="inb_released")
    with store.session() as db:
        rows = db.execute(select(Event.resource_id, Event.seq).order_by(Event.seq)).all()
    assert [r.resource_id for r in rows] == ["inb_kept", "inb_released"]
    assert kept.seq == rows[0].seq and rows[0].seq < rows[1].seq


def test_an_unregistered_type_raises_at_emit(store):
    with store.session() as db:
        with pytest.raises(events.UnknownEventType):
            events.emit(db, "inbox.exploded", tenant_id=None)
        with pytest.raises(events.UnknownEventType):
            events.emit_many(db, [{"type": "message.received"}, {"type": "message.recieved"}])
        db.rollback()
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Event)) == 0


def test_events_name_their_actor_and_category(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read", "email:send"])
    resp = client.post("/v1/tokens/", headers=owner.auth,
                       json={"inbox_id": inbox_id, "label": "by session", "scopes": ["email:read"]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    with store.session() as db:
        inbound.receive(db, inbox_ids=[inbox_id], raw=b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n",
                        envelope_from="a@b.example", envelope_to={})
    with store.session() as db, events.acting_as(events.WORKER):
        events.emit(db, "message.deferred", tenant_id=owner.tenant_id, inbox_id=inbox_id, resource_id="msg_x")
    listed = {e["type"]: e for e in _poll(client, reader.auth, None)}
    assert listed["inbox.created"]["actor"] == {"kind": "user", "id": owner.user_id}
    assert listed["inbox.created"]["category"] == "inboxes"
    assert listed["message.received"]["actor"] == {"kind": "smtp", "id": None}
    assert listed["message.received"]["category"] == "messages"
    assert listed["message.deferred"]["actor"] == {"kind": "worker", "id": None}
    tokens_made = [e for e in _poll(client, reader.auth, None) if e["type"] == "token.created"]
    assert [e["actor"]["kind"] for e in tokens_made] == ["user", "user"]
    assert all(e["category"] == "tokens" for e in tokens_made)
    with store.session() as db:  # an agent token's own call: its actor is the token
        events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id, actor=reader.token_id)
    last = _poll(client, reader.auth, None)[-1]
    assert last["actor"] == {"kind": "agent", "id": reader.token_id}
    with store.session() as db:  # no actor given, none in the context: the system
        events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id)
    assert _poll(client, reader.auth, None)[-1]["actor"] == {"kind": "system", "id": None}


def test_the_worker_purges_events_past_the_retention_in_batches(make_settings, make_store, monkeypatch):
    settings = make_settings(event_retention_days=30)
    store = make_store(settings)
    with store.session() as db:
        events.emit_many(db, [{"type": "message.received", "tenant_id": "tnt_x", "resource_id": f"msg_old{i}"}
                              for i in range(7)])
    clock.advance(dt.timedelta(days=20))
    with store.session() as db:
        events.emit(db, "message.received", tenant_id="tnt_x", resource_id="msg_young")
    worker = Worker(store, settings)
    try:
        assert worker.purge_events() == 0  # the old ones are 20 days old: kept
        clock.advance(dt.timedelta(days=11))  # 31 and 11 days old
        monkeypatch.setattr("appliance.worker.EVENT_PURGE_BATCH", 3)  # three transactions of 3, 3, 1
        assert worker.purge_events() == 7
    finally:
        worker.close()
    with store.session() as db:
        assert db.scalars(select(Event.resource_id)).all() == ["msg_young"]
        assert events.purge_events(db, retention_days=30) == 0


def test_migration_numbers_existing_events_in_id_order(store):
    alembic(store, "downgrade", "0014_web_tier")
    rows = [("evt_01J00000000000000000000003", "token.created", "usr_01J00000000000000000000001"),
            ("evt_01J00000000000000000000001", "message.received", None),
            ("evt_01J00000000000000000000002", "token.paused", "tok_01J00000000000000000000001"),
            ("evt_01J00000000000000000000004", "waitlist.approved", None)]
    with store.engine.begin() as conn:
        for event_id, type_, actor in rows:
            conn.execute(text("INSERT INTO events (id, type, actor, occurred_at, payload) "
                              "VALUES (:id, :type, :actor, :at, '{}')"),
                         {"id": event_id, "type": type_, "actor": actor, "at": dt.datetime(2026, 1, 1)})
    alembic(store, "upgrade", "head")
    with store.engine.begin() as conn:
        got = conn.execute(text("SELECT seq, id, category, actor_kind, actor_id FROM events ORDER BY seq")).all()
    assert [tuple(r) for r in got] == [
        (1, "evt_01J00000000000000000000001", "messages", "smtp", None),
        (2, "evt_01J00000000000000000000002", "tokens", "agent", "tok_01J00000000000000000000001"),
        (3, "evt_01J00000000000000000000003", "tokens", "user", "usr_01J00000000000000000000001"),
        (4, "evt_01J00000000000000000000004", "access", "system", None)]
    with store.session() as db:  # the counter goes on from the numbered rows
        assert events.emit(db, "inbox.created", tenant_id=None) is not None
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT max(seq) FROM events")).scalar() == 5


def test_an_event_emitted_in_a_read_session_is_numbered_and_kept(store):
    """PostgreSQL's read sessions run in autocommit: the events are still numbered under the
    counter's lock, in a transaction of their own (SQLite's read sessions are transactions)."""
    with store.read_sessions() as db:
        event = events.emit(db, "message.updated", tenant_id="tnt_x", inbox_id="inb_x", resource_id="msg_read")
        db.commit()
    with store.session() as db:
        assert db.scalar(select(Event.seq).where(Event.resource_id == "msg_read")) == event.seq > 0
