"""Issue 22: caps stay exact and take effect at once, with metering made cheap (one statement per
send for its counters; a received batch's caps read with what they hold; RCPT reading a tenant's
mailbox caps once per SMTP transaction).

"Another process" is a second Store on the same database: its own engine and connection pool,
as another web worker, SMTP listener or node has. Every test runs on SQLite and on PostgreSQL.
Any per-process (or per-connection) memory of caps that outlived a cap's change would fail the
"very next" assertions below; a read of the gauges that a concurrent batch could slip past would
fail the concurrency tests on PostgreSQL (SQLite's writers take turns)."""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete, func, select, update

from appliance import clock
from appliance.db import Store
from appliance.errors import RateLimitedError
from appliance.ids import new_id
from appliance.models import Message, RateCounter, UsageCap
from appliance.services.governance import caps, usage
from appliance.services.mail import inbound
from tests.integration.smtp_fixtures import client as smtp_client, smtp_listener, tls_files  # noqa: F401
from tests.world import World

TO = [{"email": "someone@example.org"}]


def _mid_hour() -> None:
    """Move the clock to half past the next hour, so no window ends while a test runs."""
    now = clock.utcnow()
    target = now.replace(minute=30, second=0, microsecond=0) + dt.timedelta(hours=1)
    clock.advance(target - now)


def _send(client, auth: dict) -> int:
    return client.post("/v1/messages/", json={"to": TO, "subject": "hi", "text_body": "hello"},
                       headers=auth).status_code


def _put_cap(store: Store, tenant_id: str, kind: str, level: str, subject_id: str, **values) -> None:
    """Create or change a cap as another process would: its own store, committed at once."""
    with store.session() as db:
        changed = db.execute(update(UsageCap).where(UsageCap.tenant_id == tenant_id, UsageCap.kind == kind,
                                                    UsageCap.subject_id == subject_id).values(**values)).rowcount
        if not changed:
            now = clock.utcnow()
            db.add(UsageCap(id=new_id("cap"), tenant_id=tenant_id, kind=kind, level=level, subject_id=subject_id,
                            mode="enforce", alert_thresholds=[], created_at=now, updated_at=now, **values))


def _drop_cap(store: Store, tenant_id: str, kind: str) -> None:
    with store.session() as db:
        db.execute(delete(UsageCap).where(UsageCap.tenant_id == tenant_id, UsageCap.kind == kind))


def _raw(n: int, to: str = "capped@exact.example") -> bytes:
    """A message of the same size for every n below 100."""
    return (f"From: a@sender.example\r\nTo: {to}\r\nSubject: note {n:02d}\r\n"
            f"Message-ID: <{n:02d}.exact@sender.example>\r\n\r\n{'x' * 500}\r\n").encode()


def _receive(store: Store, inbox_id: str, n: int, settings=None) -> bool:
    """Store one message as the SMTP committer does; False when a mailbox cap refused it."""
    try:
        with store.session() as db:
            inbound.receive(db, inbox_ids=[inbox_id], raw=_raw(n), envelope_from="a@sender.example",
                            envelope_to={}, settings=settings)
        return True
    except caps.MailboxFull:
        return False


def _held(store: Store, tenant_id: str, inbox_id: str) -> int:
    with store.read_sessions() as db:
        return usage.gauge(db, tenant_id, usage.MAILBOX_BYTES, inbox_id)


def test_a_send_cap_made_changed_or_deleted_elsewhere_binds_the_very_next_send(client, settings, make_store,
                                                                               world: World):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "sender@exact.example")
    other = make_store(settings)
    assert _send(client, agent.auth) == 201  # no cap yet: nothing to remember but "none"
    _put_cap(other, owner.tenant_id, "sends", "token", agent.token_id, per_hour=1)
    assert [_send(client, agent.auth) for _ in range(2)] == [201, 429]
    _put_cap(other, owner.tenant_id, "sends", "token", agent.token_id, per_hour=2)
    assert [_send(client, agent.auth) for _ in range(2)] == [201, 429]
    _put_cap(other, owner.tenant_id, "sends", "token", agent.token_id, per_hour=None, per_day=1)
    assert [_send(client, agent.auth) for _ in range(2)] == [201, 429]  # counted by day from now on
    _drop_cap(other, owner.tenant_id, "sends")
    assert _send(client, agent.auth) == 201
    _put_cap(other, owner.tenant_id, "sends", "tenant", owner.tenant_id, per_hour=1)
    assert [_send(client, agent.auth) for _ in range(2)] == [201, 429]


def test_a_mailbox_cap_made_changed_or_deleted_elsewhere_binds_the_very_next_message(settings, store, make_store,
                                                                                      world: World):
    owner = world.owner()
    inbox_id = world.inbox(owner, "capped@exact.example")
    other = make_store(settings)
    assert _receive(store, inbox_id, 0, settings)  # no cap yet
    size = _held(store, owner.tenant_id, inbox_id)
    _put_cap(other, owner.tenant_id, "mailbox", "inbox", inbox_id, limit_bytes=2 * size)
    assert [_receive(store, inbox_id, n, settings) for n in (1, 2)] == [True, False]
    _put_cap(other, owner.tenant_id, "mailbox", "inbox", inbox_id, limit_bytes=3 * size)
    assert [_receive(store, inbox_id, n, settings) for n in (2, 3)] == [True, False]
    _put_cap(other, owner.tenant_id, "mailbox", "inbox", inbox_id, mode="allow_and_bill")
    assert _receive(store, inbox_id, 3, settings)
    _put_cap(other, owner.tenant_id, "mailbox", "inbox", inbox_id, mode="enforce")
    assert not _receive(store, inbox_id, 4, settings)
    _drop_cap(other, owner.tenant_id, "mailbox")
    assert _receive(store, inbox_id, 4, settings)
    _put_cap(other, owner.tenant_id, "mailbox", "tenant", owner.tenant_id, limit_bytes=5 * size)
    assert not _receive(store, inbox_id, 5, settings)
    assert _held(store, owner.tenant_id, inbox_id) == 5 * size  # refusals counted nothing


def test_rcpt_sees_a_cap_changed_elsewhere_at_the_next_transaction_of_the_same_connection(
        settings, store, make_store, world: World, smtp_listener) -> None:
    owner = world.owner()
    full = world.inbox(owner, "capped@exact.example")
    world.inbox(owner, "roomy@exact.example")
    other = make_store(settings)
    assert _receive(store, full, 0, settings)
    held = _held(store, owner.tenant_id, full)
    with smtp_client(smtp_listener()) as smtp:
        smtp.mail("a@sender.example")
        assert smtp.rcpt("capped@exact.example")[0] == 250
        smtp.rset()
        _put_cap(other, owner.tenant_id, "mailbox", "inbox", full, limit_bytes=held)  # full now
        smtp.mail("a@sender.example")
        assert smtp.rcpt("capped@exact.example") == (452, b"4.2.2 Mailbox full; try again later")
        assert smtp.rcpt("roomy@exact.example")[0] == 250  # the same tenant's other inbox has room
        smtp.rset()
        _put_cap(other, owner.tenant_id, "mailbox", "inbox", full, limit_bytes=held + 10_000)
        smtp.mail("a@sender.example")
        assert smtp.rcpt("capped@exact.example")[0] == 250
        smtp.rset()
        _put_cap(other, owner.tenant_id, "mailbox", "tenant", owner.tenant_id, limit_bytes=held)
        smtp.mail("a@sender.example")
        assert smtp.rcpt("roomy@exact.example")[0] == 452  # the tenant cap binds every inbox
        smtp.rset()
        _drop_cap(other, owner.tenant_id, "mailbox")
        smtp.mail("a@sender.example")
        assert smtp.rcpt("capped@exact.example")[0] == 250


def _together(count: int, work) -> list:
    """Run work(i) in count threads released at once."""
    barrier = threading.Barrier(count)

    def run(i: int):
        barrier.wait(30)
        return work(i)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.parametrize("binding", ["tenant", "inbox", "token"])
def test_concurrent_senders_of_several_processes_never_pass_the_lowest_level(settings, make_store, world: World,
                                                                             binding: str):
    """Twelve senders, each with its own store, charge one send at once: exactly the binding
    level's limit pass, the rest are refused, and every counter holds only what passed."""
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "sender@exact.example")
    subjects = {"tenant": owner.tenant_id, "inbox": agent.inbox_id, "token": agent.token_id}
    for level, subject in subjects.items():
        _put_cap(world.store, owner.tenant_id, "sends", level, subject, per_hour=4 if level == binding else 7,
                 per_day=9, per_month=9)
    stores = [make_store(settings) for _ in range(12)]

    def charge(i: int) -> bool:
        try:
            with stores[i].session() as db:
                caps.charge_sends(db, settings, tenant_id=owner.tenant_id, inbox_id=agent.inbox_id,
                                  token_id=agent.token_id, count=1)
            return True
        except RateLimitedError as refused:
            assert refused.code == "send_cap_reached"
            return False
    assert sorted(_together(12, charge)) == [False] * 8 + [True] * 4
    with world.store.read_sessions() as db:
        counts = dict(db.execute(select(RateCounter.key, RateCounter.count)
                                 .where(RateCounter.key.like("cap:sends:%"))).all())
    assert sorted(counts.values()) == [4] * 9  # three levels times three windows, refusals undone


@pytest.mark.parametrize("level", ["inbox", "tenant", "default"])
def test_concurrent_batches_of_several_processes_never_pass_a_mailbox_cap(make_settings, make_store, level: str):
    """Eight committers, each with its own store, store one message of the same size at once into
    a mailbox with room for three: exactly three are stored, five refused, the gauge holds three."""
    probe = len(_raw(0))
    room = 3 * probe + probe // 2
    settings = make_settings(default_tenant_mailbox_bytes=room if level == "default" else 0)
    store = make_store(settings)
    world = World(store, settings)
    owner = world.owner()
    inbox_id = world.inbox(owner, "capped@exact.example")
    if level != "default":
        _put_cap(store, owner.tenant_id, "mailbox", level, owner.tenant_id if level == "tenant" else inbox_id,
                 limit_bytes=room)
    stores = [make_store(settings) for _ in range(8)]
    outcomes = _together(8, lambda i: _receive(stores[i], inbox_id, i, settings))
    assert sorted(outcomes) == [False] * 5 + [True] * 3
    with store.read_sessions() as db:
        stored = db.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id))
        sizes = db.scalar(select(func.sum(Message.size)).where(Message.inbox_id == inbox_id))
    assert stored == 3
    assert _held(store, owner.tenant_id, inbox_id) == sizes <= room
