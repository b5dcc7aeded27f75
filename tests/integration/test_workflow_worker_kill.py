"""Issue 20, point 1: `gentbox worker` runs workflows as a real process; killed with SIGKILL in the
middle of the work and started again, every run completes once and no local action happens twice.

200 received messages each trigger a workflow that labels the message, opens a task and calls a
webhook (a slow loopback receiver, verified with the standardwebhooks library). The worker is
killed once some webhooks have arrived (sends in progress), then restarted. After
it: one run per message, each message labelled once (one label.applied event each), one task
each, and every webhook accepted (at least once; only sends in flight at the kill may repeat,
with the same webhook-id for receivers to dedupe on).

A second test stops the worker inside a batch of runs, between two actions (the process dies:
SystemExit, not an error a run records), and runs it again: the batch's runs and effects were
all rolled back with the cursor, and the next pass makes each exactly once.
"""
from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from appliance.models import Event, Message, Task, WorkflowDelivery, WorkflowRun
from appliance.services.mail import inbound
from appliance.services.workspace import tasks
from appliance.worker import Worker
from tests.integration.test_webhook_worker_kill import start_worker, wait_for, worker_env
from tests.integration.webhook_receiver import Receiver

COUNT = 200


@pytest.fixture
def settings(make_settings):
    return make_settings(webhook_allow_private=True)


def _receive(store, inbox_id: str, count: int) -> None:
    with store.session() as db:
        for n in range(count):
            raw = (f"From: Vendor <billing@vendor.test>\r\nTo: desk@killtest.example\r\nSubject: Invoice {n}\r\n"
                   f"Message-ID: <inv{n}@vendor.test>\r\n\r\nInvoice {n} attached.\r\n").encode()
            inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="billing@vendor.test", envelope_to={})


def _count(store, query) -> int:
    with store.read_sessions() as db:
        return db.scalar(query)


def test_a_worker_killed_mid_run_completes_every_run_once_after_restart(world, store, settings, client,
                                                                         tmp_path) -> None:
    receiver = Receiver([], lambda n, hit: (200, {}, 0.02))  # slow enough to be killed mid-way
    log = tmp_path / "worker.log"
    proc = None
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@killtest.example")
    made = client.post("/v1/workflows/", headers=owner.auth, json={
        "inbox_id": inbox_id, "name": "invoices", "trigger": {"type": "email_received"},
        "conditions": [{"field": "from_domain", "op": "eq", "value": "vendor.test"}],
        "writes": [{"target": {"type": "email.add_label", "label": "invoices"}},
                   {"target": {"type": "task", "summary": "Pay {subject}"}},
                   {"target": {"type": "webhook", "url": receiver.url}}]})
    assert made.status_code == 201, made.json
    receiver.secrets.append(made.json["secret"])
    _receive(store, inbox_id, COUNT)
    try:
        env = worker_env(tmp_path, settings)
        proc = start_worker(env, log)
        wait_for(lambda: len(receiver.accepted()) >= 30, time.monotonic() + 60, proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(receiver.accepted()) < COUNT  # killed in the middle
        proc = start_worker(env, log)
        done = select(func.count()).select_from(WorkflowDelivery).where(WorkflowDelivery.status == "succeeded")
        wait_for(lambda: _count(store, done) == COUNT, time.monotonic() + 120, proc, log)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        receiver.stop()
    assert _count(store, select(func.count()).select_from(WorkflowRun)) == COUNT
    assert _count(store, select(func.count(func.distinct(WorkflowRun.event_id)))) == COUNT
    assert _count(store, select(func.count()).select_from(Event).where(Event.type == "label.applied")) == COUNT
    assert _count(store, select(func.count()).select_from(Task)) == COUNT
    with store.read_sessions() as db:
        assert all(labels == ["invoices"] for labels in db.scalars(select(Message.labels)))
    accepted = receiver.accepted()
    assert len(accepted) == COUNT and all(hit.verified for hit in receiver.hits)
    assert sum(n - 1 for n in accepted.values()) <= 2, accepted.most_common(3)  # only the send in flight


def test_a_worker_dying_inside_a_batch_of_runs_leaves_nothing_half_done(world, store, settings, client,
                                                                        monkeypatch) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@killtest.example")
    made = client.post("/v1/workflows/", headers=owner.auth, json={
        "inbox_id": inbox_id, "name": "invoices", "trigger": {"type": "email_received"},
        "writes": [{"target": {"type": "email.add_label", "label": "invoices"}},
                   {"target": {"type": "task", "summary": "Pay {subject}"}}]})
    assert made.status_code == 201, made.json
    _receive(store, inbox_id, 20)
    real, calls = tasks.create_task, []

    def dies_at_the_eleventh(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 11:
            raise SystemExit("killed")  # the process ends here, between the label and the task
        return real(*args, **kwargs)
    monkeypatch.setattr(tasks, "create_task", dies_at_the_eleventh)
    worker = Worker(store, settings)
    try:
        with pytest.raises(SystemExit):
            worker.run_workflows()
        assert _count(store, select(func.count()).select_from(WorkflowRun)) == 0  # all rolled back
        assert _count(store, select(func.count()).select_from(Task)) == 0
        worker.run_workflows()  # the restarted worker
        worker.run_workflows()
    finally:
        worker.close()
    assert _count(store, select(func.count()).select_from(WorkflowRun)) == 20
    assert _count(store, select(func.count()).select_from(Task)) == 20
    assert _count(store, select(func.count()).select_from(Event).where(Event.type == "label.applied")) == 20
