"""The worker fires the schedule (issue 15, points 1 and 3): `Worker.run_once`, the serve loop and
`gentbox worker --once` (a real process) emit due scheduled events as the worker, and `--once`
also delivers alerts' webhooks until none is due, with no serving thread."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from appliance.clock import utcnow
from appliance.models import Event, Schedule, WebhookDelivery
from appliance.models.alerts import webhook_msg_id
from appliance.services.automation import events, schedule
from appliance.worker import Worker
from tests.integration.webhook_receiver import Receiver, make_alert


def _plan(store, tenant_id: str, inbox_id: str, key: str, due: dt.datetime) -> None:  # noqa: ANN001
    with store.session() as db:
        schedule.plan(db, tenant_id=tenant_id, inbox_id=inbox_id, key=key, source="test_once",
                      event_type="contact.birthday", due_at=due, payload={"name": "Ada"})


def _fired(store, inbox_id: str) -> list[Event]:  # noqa: ANN001
    with store.session() as db:
        found = db.scalars(select(Event).where(Event.inbox_id == inbox_id, Event.type == "contact.birthday")).all()
        db.expunge_all()
        return list(found)


def test_run_once_fires_what_is_due_as_the_worker_and_not_what_is_not(world, store, settings) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    _plan(store, owner.tenant_id, inbox_id, "t:due", utcnow() - dt.timedelta(seconds=1))
    _plan(store, owner.tenant_id, inbox_id, "t:later", utcnow() + dt.timedelta(hours=1))
    worker = Worker(store, settings)
    try:
        worker.run_once()
        worker.run_once()
    finally:
        worker.close()
    fired = _fired(store, inbox_id)
    assert len(fired) == 1 and fired[0].actor_kind == "worker" and fired[0].payload["name"] == "Ada"
    with store.session() as db:
        row = db.scalar(select(Schedule).where(Schedule.key == "t:due"))
        assert row.fired_at is not None and fired[0].payload["schedule_id"] == row.id


def test_the_serve_loop_fires_a_row_that_falls_due_while_it_runs(world, make_settings, make_store) -> None:
    settings = make_settings(worker_poll_interval=0.1)
    store = make_store(settings)
    owner = world.owner()
    inbox_id = world.inbox(owner)
    worker = Worker(store, settings)
    thread = threading.Thread(target=worker.serve_forever, daemon=True)
    thread.start()
    try:
        _plan(store, owner.tenant_id, inbox_id, "t:soon", utcnow() + dt.timedelta(milliseconds=300))
        deadline = time.monotonic() + 10
        while not _fired(store, inbox_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_fired(store, inbox_id)) == 1
    finally:
        worker.stopping.set()
        thread.join(timeout=20)
        worker.close()


def test_worker_once_delivers_webhooks_and_fires_the_schedule(world, store, settings, dns_server,
                                                              tmp_path: Path) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    receiver = Receiver([])
    try:
        with store.session() as db:
            alert, secret = make_alert(db, settings, tenant_id=owner.tenant_id, inbox_id=inbox_id,
                                       target=receiver.url, events=["message.received", "contact.birthday"])
            alert_id = alert.id
        receiver.secrets.append(secret)
        with store.session() as db:
            ids = [events.emit(db, "message.received", tenant_id=owner.tenant_id, inbox_id=inbox_id,
                               payload={"n": n}).id for n in range(20)]
        _plan(store, owner.tenant_id, inbox_id, "t:cli", utcnow() - dt.timedelta(seconds=1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
        env.update(GENTBOX_DATA_DIR=str(tmp_path / "var"), GENTBOX_DATABASE_URL=settings.database_url,
                   GENTBOX_SECRET_KEY=settings.secret_key, GENTBOX_LOG_LEVEL="WARNING",
                   GENTBOX_HOSTNAME=settings.hostname, GENTBOX_DNS_SERVERS=dns_server.address,
                   GENTBOX_DNS_TIMEOUT="1", GENTBOX_WEBHOOK_ALLOW_PRIVATE="true")
        done = subprocess.run([sys.executable, "-m", "appliance.cli", "worker", "--once"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        fired = _fired(store, inbox_id)
        assert len(fired) == 1
        expected = {webhook_msg_id(event_id, alert_id) for event_id in ids + [fired[0].id]}
        assert set(receiver.accepted()) == expected and set(receiver.accepted().values()) == {1}
        assert all(hit.verified for hit in receiver.hits)
        with store.session() as db:
            statuses = db.scalars(select(WebhookDelivery.status).where(WebhookDelivery.alert_id == alert_id)).all()
            assert statuses == ["succeeded"] * 21
    finally:
        receiver.stop()
