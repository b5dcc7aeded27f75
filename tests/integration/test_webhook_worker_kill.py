"""`gentbox worker` delivers webhooks as a real process: killed with SIGKILL in the middle of a
burst and started again, it delivers every event (at least once; receivers dedupe on webhook-id)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from appliance.models import WebhookDelivery
from appliance.models.alerts import webhook_msg_id
from tests.integration.test_webhook_delivery import emit_events, setup_alert
from tests.integration.webhook_receiver import Receiver


def worker_env(tmp_path: Path, settings) -> dict[str, str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env.update(GENTBOX_DATA_DIR=str(tmp_path / "var"), GENTBOX_DATABASE_URL=settings.database_url,
               GENTBOX_SECRET_KEY=settings.secret_key, GENTBOX_LOG_LEVEL="WARNING",
               GENTBOX_HOSTNAME=settings.hostname, GENTBOX_DNS_SERVERS="127.0.0.1:9", GENTBOX_DNS_TIMEOUT="1",
               GENTBOX_WORKER_POLL_INTERVAL="0.1", GENTBOX_WEBHOOK_ALLOW_PRIVATE="true",
               GENTBOX_WEBHOOK_TIMEOUT="1", GENTBOX_WEBHOOK_PER_ALERT="4")
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "appliance.cli", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, deadline: float, proc: subprocess.Popen, log: Path) -> None:  # noqa: ANN001
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def test_a_worker_killed_mid_burst_delivers_every_event_after_restart(world, store, make_settings, make_store,
                                                                      tmp_path) -> None:
    settings = make_settings(webhook_allow_private=True)
    store = make_store(settings)
    receiver = Receiver([], lambda n, hit: (200, {}, 0.02))  # slow enough to be killed mid-burst
    log = tmp_path / "worker.log"
    proc = None
    try:
        owner, inbox_id, alert_id, secret = setup_alert(world, store, settings, receiver.url)
        receiver.secrets.append(secret)
        event_ids = emit_events(store, owner.tenant_id, inbox_id, 400)
        env = worker_env(tmp_path, settings)
        proc = start_worker(env, log)
        wait_for(lambda: len(receiver.accepted()) >= 80, time.monotonic() + 60, proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(receiver.accepted()) < 400  # killed in the middle of the burst
        proc = start_worker(env, log)

        def all_done() -> bool:
            with store.read_sessions() as db:
                return db.scalar(select(func.count()).select_from(WebhookDelivery).where(
                    WebhookDelivery.status == "succeeded")) == 400
        wait_for(all_done, time.monotonic() + 90, proc, log)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        receiver.stop()
    accepted = receiver.accepted()
    assert set(accepted) == {webhook_msg_id(e, alert_id) for e in event_ids}  # none lost
    # At least once: only sends made but not yet recorded at the kill can arrive twice: those in
    # flight (4 per alert) and those finished since the engine last recorded a batch.
    assert sum(n - 1 for n in accepted.values()) <= 8, accepted.most_common(5)
    assert all(hit.verified for hit in receiver.hits)
