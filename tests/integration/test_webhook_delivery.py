"""Webhook delivery (issue 15, points 3 and 4): a real receiver on loopback checks every request
with the standardwebhooks package; retries run on the injected clock (appliance/clock.py)."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import standardwebhooks
from sqlalchemy import func, select

from appliance import clock
from appliance.clock import utcnow
from appliance.dns import Resolver
from appliance.models import Alert, Event, SystemMail, Task, WebhookDelivery
from appliance.models.alerts import webhook_msg_id
from appliance.services.automation import alerts, dispatch, events
from tests.integration.webhook_receiver import Receiver, make_alert


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def factory(secrets: list[str] | None = None, behave=None) -> Receiver:  # noqa: ANN001
        receiver = Receiver(secrets or [], behave)
        made.append(receiver)
        return receiver
    yield factory
    for receiver in made:
        receiver.stop()


def engine(store, settings) -> dispatch.Dispatcher:  # noqa: ANN001
    return dispatch.Dispatcher(store, settings, Resolver(settings), name="test-worker")


def emit_events(store, tenant_id: str, inbox_id: str, count: int, per_transaction: int = 100) -> list[str]:  # noqa: ANN001
    ids = []
    for start in range(0, count, per_transaction):
        with store.session() as db:
            for n in range(start, min(start + per_transaction, count)):
                ids.append(events.emit(db, "message.received", tenant_id=tenant_id, inbox_id=inbox_id,
                                       resource_id=f"msg_{n}", payload={"subject": f"Hello {n}", "n": n}).id)
    return ids


def setup_alert(world, store, settings, target, **kwargs):  # noqa: ANN001, ANN201
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with store.session() as db:
        alert, secret = make_alert(db, settings, tenant_id=owner.tenant_id, inbox_id=inbox_id, target=target,
                                   events=["message.received"], **kwargs)
        alert_id = alert.id
    return owner, inbox_id, alert_id, secret


def delivery(store, alert_id: str) -> WebhookDelivery:  # noqa: ANN001
    with store.session() as db:
        found = db.scalars(select(WebhookDelivery).where(WebhookDelivery.alert_id == alert_id)
                           .order_by(WebhookDelivery.created_at.desc())).first()
        db.expunge(found)
        return found


def test_a_burst_of_500_reaches_the_receiver_once_each(world, store, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True, webhook_timeout=2.0, webhook_per_alert=8)
    store = make_store(settings)

    def behave(number, hit):  # noqa: ANN001, ANN202
        if number < 100:
            return 500, {}, 0.0
        if number == 100:
            return 500, {}, 5.0  # longer than webhook_timeout: the sender gives up first
        return 200, {}, 0.0
    receiver = receivers(behave=behave)
    owner, inbox_id, alert_id, secret = setup_alert(world, store, settings, receiver.url)
    receiver.secrets.append(secret)
    event_ids = emit_events(store, owner.tenant_id, inbox_id, 500)
    hooks = engine(store, settings)
    hooks.run_until_idle()
    for _ in range(10):  # make the next retry due (5 s; 5 min for one a busy machine timed out twice)
        with store.session() as db:
            due = db.scalar(select(func.min(WebhookDelivery.next_attempt_at))
                            .where(WebhookDelivery.status.in_(("pending", "failed"))))
        if due is None:
            break
        clock.advance(max(due - utcnow(), dt.timedelta(0)) + dt.timedelta(seconds=1))
        hooks.run_until_idle()
    hooks.close()
    accepted = receiver.accepted()
    with store.session() as db:
        statuses = dict(db.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all())
    assert statuses == {"succeeded": 500}
    assert set(accepted) == {webhook_msg_id(e, alert_id) for e in event_ids}
    assert set(accepted.values()) == {1}
    assert all(hit.verified for hit in receiver.hits), [h.headers for h in receiver.hits if not h.verified][:1]
    assert len(receiver.hits) >= 601  # 100 failures, the timeout, then all 500 accepted


def test_retries_follow_the_exponential_schedule_then_exhaust(world, store, make_settings, make_store,
                                                            receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = receivers(behave=lambda n, hit: (500, {}, 0.0))
    owner, inbox_id, alert_id, _ = setup_alert(world, store, settings, receiver.url, retries=7)
    emit_events(store, owner.tenant_id, inbox_id, 1)
    hooks = engine(store, settings)
    waits = []
    for _ in range(8):
        hooks.run_until_idle()
        found = delivery(store, alert_id)
        if found.next_attempt_at is None:
            break
        waits.append(round((found.next_attempt_at - found.updated_at).total_seconds()))
        # The clock is real time plus an offset: stop 4 s short of the due time (the shortest wait
        # is 5 s), so a loaded machine's second between here and the engine's look stays early.
        clock.advance(found.next_attempt_at - clock.utcnow() - dt.timedelta(seconds=4))
        hooks.run_until_idle()  # early: nothing is sent
        assert len(receiver.hits) == len(waits)
        clock.advance(max(found.next_attempt_at - clock.utcnow(), dt.timedelta(0)))
    hooks.close()
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert (found.status, found.attempt, len(receiver.hits)) == ("exhausted", 8, 8)
    assert found.response_status == 500 and found.error == "HTTP 500"


def test_a_410_disables_the_alert(world, store, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = receivers(behave=lambda n, hit: (410, {}, 0.0))
    owner, inbox_id, alert_id, _ = setup_alert(world, store, settings, receiver.url)
    emit_events(store, owner.tenant_id, inbox_id, 1)
    hooks = engine(store, settings)
    hooks.run_until_idle()
    found = delivery(store, alert_id)
    assert (found.status, found.response_status, found.next_attempt_at) == ("failed", 410, None)
    emit_events(store, owner.tenant_id, inbox_id, 3)
    clock.advance(dt.timedelta(hours=1))
    hooks.run_until_idle()
    hooks.close()
    assert len(receiver.hits) == 1  # nothing more goes to a disabled alert
    with store.session() as db:
        alert = db.get(Alert, alert_id)
        assert (alert.enabled, alert.disabled_reason) == (False, "gone")
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.type == "alert.disabled", Event.resource_id == alert_id)) == 1


def test_retry_after_is_honoured(world, store, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    answers = iter([(503, {"Retry-After": "120"}, 0.0), (429, {"Retry-After": "7"}, 0.0)])
    receiver = receivers(behave=lambda n, hit: next(answers, (200, {}, 0.0)))
    owner, inbox_id, alert_id, _ = setup_alert(world, store, settings, receiver.url)
    emit_events(store, owner.tenant_id, inbox_id, 1)
    hooks = engine(store, settings)
    hooks.run_until_idle()
    found = delivery(store, alert_id)
    assert (found.next_attempt_at - found.updated_at).total_seconds() == 120  # not the schedule's 5 s
    clock.advance(dt.timedelta(seconds=60))
    hooks.run_until_idle()
    assert len(receiver.hits) == 1
    clock.advance(dt.timedelta(seconds=61))
    hooks.run_until_idle()
    found = delivery(store, alert_id)
    assert len(receiver.hits) == 2 and (found.next_attempt_at - found.updated_at).total_seconds() == 7
    clock.advance(dt.timedelta(seconds=8))
    hooks.run_until_idle()
    hooks.close()
    assert delivery(store, alert_id).status == "succeeded" and len(receiver.hits) == 3


def test_five_days_of_failure_disable_the_alert_and_mail_the_owner(world, store, make_settings, make_store,
                                                                 receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = receivers(behave=lambda n, hit: (500, {}, 0.0))
    owner, inbox_id, alert_id, _ = setup_alert(world, store, settings, receiver.url, retries=10)
    hooks = engine(store, settings)
    started = utcnow()
    while True:
        emit_events(store, owner.tenant_id, inbox_id, 1)
        hooks.run_until_idle()
        with store.session() as db:
            enabled = db.get(Alert, alert_id).enabled
        if not enabled or utcnow() - started > dt.timedelta(days=7):
            break
        assert utcnow() - started < dt.timedelta(days=5)
        clock.advance(dt.timedelta(hours=6))
    hooks.close()
    assert not enabled and utcnow() - started >= dt.timedelta(days=5)
    with store.session() as db:
        alert = db.get(Alert, alert_id)
        assert alert.disabled_reason == "failing"
        mails = db.scalars(select(SystemMail).where(SystemMail.kind == "alert_disabled")).all()
        assert [m.rcpt_to for m in mails] == [owner.email]
        assert alert_id.encode() in mails[0].raw
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.type == "alert.disabled", Event.resource_id == alert_id)) == 1


def test_a_rotated_secret_signs_with_both_for_24_hours(world, store, make_settings, make_store, receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = receivers()
    owner, inbox_id, alert_id, old = setup_alert(world, store, settings, receiver.url)
    new = alerts.new_secret()
    with store.session() as db:  # what rotate-secret stores (h9's service does the same)
        alert = db.get(Alert, alert_id)
        alert.previous_secret_sealed = alert.secret_sealed
        alert.previous_secret_until = utcnow() + dt.timedelta(hours=24)
        from appliance import security
        alert.secret_sealed = security.seal(settings.secret_key, "webhook-secrets", new.encode(), alert_id)
    receiver.secrets.extend([old, new])  # the peer library must accept the request with each one
    emit_events(store, owner.tenant_id, inbox_id, 1)
    hooks = engine(store, settings)
    hooks.run_until_idle()
    assert len(receiver.hits) == 1 and receiver.hits[0].verified
    assert len(receiver.hits[0].headers["webhook-signature"].split()) == 2
    clock.advance(dt.timedelta(hours=24, minutes=1))
    emit_events(store, owner.tenant_id, inbox_id, 1)
    hooks.run_until_idle()
    hooks.close()
    hit = receiver.hits[1]
    # The clock moved a day, so the library's 5-minute timestamp window would refuse: compare
    # with the signature the library itself computes for the new secret.
    stamp = dt.datetime.fromtimestamp(int(hit.headers["webhook-timestamp"]), tz=dt.timezone.utc)
    expected = standardwebhooks.Webhook(new).sign(hit.webhook_id, stamp, hit.body.decode())
    assert hit.headers["webhook-signature"] == expected


def test_alerts_of_one_tenant_never_receive_another_tenants_events(world, store, make_settings, make_store,
                                                                  receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    a, b = receivers(), receivers()
    owner_a, inbox_a, alert_a, secret_a = setup_alert(world, store, settings, a.url)
    owner_b, inbox_b, alert_b, secret_b = setup_alert(world, store, settings, b.url)
    a.secrets.append(secret_a)
    b.secrets.append(secret_b)
    events_a = emit_events(store, owner_a.tenant_id, inbox_a, 5)
    events_b = emit_events(store, owner_b.tenant_id, inbox_b, 7)
    hooks = engine(store, settings)
    hooks.run_until_idle()
    hooks.close()
    assert set(a.accepted()) == {webhook_msg_id(e, alert_a) for e in events_a}
    assert set(b.accepted()) == {webhook_msg_id(e, alert_b) for e in events_b}
    assert all(h.verified for h in a.hits + b.hits)


def test_a_task_alert_makes_one_task_per_event(world, store, make_settings, make_store) -> None:
    settings = make_settings()
    store = make_store(settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with store.session() as db:
        alert, _ = make_alert(db, settings, tenant_id=owner.tenant_id, inbox_id=inbox_id, target=None,
                              events=["message.received"], delivery_type="task",
                              task_summary="Answer {from}: {subject} {unknown} {__class__}")
        alert_id = alert.id
    with store.session() as db:
        event_id = events.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                               payload={"from": "ann@example.org", "subject": "{n} quotes"}).id
    for name in ("one", "two"):  # a second worker finds nothing left to do
        hooks = dispatch.Dispatcher(store, settings, Resolver(settings), name=name)
        hooks.run_until_idle()
        hooks.close()
    with store.session() as db:
        tasks = db.scalars(select(Task).where(Task.source_alert_id == alert_id)).all()
        assert [(t.summary, t.inbox_id, t.source_event_id) for t in tasks] == [
            ("Answer ann@example.org: {n} quotes {unknown} {__class__}", inbox_id, event_id)]
        assert db.scalar(select(WebhookDelivery.status).where(WebhookDelivery.alert_id == alert_id)) == "succeeded"


def test_two_engines_on_one_store_never_send_a_delivery_twice(world, store, make_settings, make_store,
                                                              receivers) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = receivers()
    owner, inbox_id, alert_id, secret = setup_alert(world, store, settings, receiver.url)
    receiver.secrets.append(secret)
    event_ids = emit_events(store, owner.tenant_id, inbox_id, 300)
    engines = [dispatch.Dispatcher(make_store(settings), settings, Resolver(settings), name=f"w{n}") for n in range(2)]
    threads = [threading.Thread(target=e.run_until_idle) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for one in engines:
        one.close()
    assert len(receiver.hits) == 300  # each sent once: no claim was taken twice
    assert set(receiver.accepted()) == {webhook_msg_id(e, alert_id) for e in event_ids}


def test_a_slow_receiver_does_not_delay_other_alerts(world, store, make_settings, make_store, receivers) -> None:
    """Bounded concurrency per alert: a receiver taking 1 s per request with a backlog of 60
    holds at most webhook_per_alert threads; another alert's events go out meanwhile."""
    settings = make_settings(webhook_allow_private=True, webhook_timeout=5, webhook_concurrency=4,
                             webhook_per_alert=2, worker_poll_interval=0.05)
    store = make_store(settings)
    slow, fast = receivers(behave=lambda n, hit: (200, {}, 1.0)), receivers()
    owner_a, inbox_a, _alert_a, _ = setup_alert(world, store, settings, slow.url)
    owner_b, inbox_b, alert_b, _ = setup_alert(world, store, settings, fast.url)
    emit_events(store, owner_a.tenant_id, inbox_a, 60)  # first in the due order
    fast_events = emit_events(store, owner_b.tenant_id, inbox_b, 10)
    hooks = engine(store, settings)
    stopping = threading.Event()
    thread = hooks.start(stopping)
    try:
        deadline = time.monotonic() + 10  # the slow backlog alone needs 30 s with 2 threads
        while len(fast.accepted()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(fast.accepted()) == {webhook_msg_id(e, alert_b) for e in fast_events}
        assert len(slow.hits) < 60
    finally:
        stopping.set()
        thread.join()
        hooks.close()
