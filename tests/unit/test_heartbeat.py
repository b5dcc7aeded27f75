"""Process heartbeats: one row per process, refreshed in place; a store that refuses them costs a
logged warning, never the mail path."""
from __future__ import annotations

import logging
import smtplib
import time

from sqlalchemy import select

from appliance.heartbeat import Heartbeat, app_version
from appliance.models import ProcessHeartbeat
from smtp.server import Listener


def rows(store) -> list[ProcessHeartbeat]:  # noqa: ANN001
    with store.read_sessions() as db:
        return list(db.scalars(select(ProcessHeartbeat)))


def test_a_process_keeps_one_row_and_moves_its_beat(store) -> None:
    beat = Heartbeat(store, "worker", 60, report=lambda: {"n": 1})
    assert beat.beat()
    [first] = rows(store)
    assert (first.kind, first.pid, first.version, first.metrics) == ("worker", beat.pid, app_version(), {"n": 1})
    time.sleep(0.01)
    assert beat.beat()
    [second] = rows(store)
    assert second.id == first.id and second.beat_at > first.beat_at and second.started_at == first.started_at


def test_the_thread_beats_at_its_interval_until_stopped(store) -> None:
    beat = Heartbeat(store, "web", 0.1).start()
    try:
        time.sleep(0.5)
    finally:
        beat.stop()
    [row] = rows(store)
    assert (row.beat_at - row.started_at).total_seconds() >= 0.2


def test_a_store_refusing_heartbeats_still_takes_mail(store, settings, world, caplog) -> None:
    owner = world.owner()
    world.inbox(owner, "desk@beats.test")
    ProcessHeartbeat.__table__.drop(store.engine)
    try:
        beat = Heartbeat(store, "smtp", 60)
        with caplog.at_level(logging.WARNING, logger="gentbox.heartbeat"):
            assert not beat.beat()
            assert not beat.beat()
        assert len([r for r in caplog.records if r.name == "gentbox.heartbeat"]) == 1  # once per outage
        listener = Listener(store, settings, host="127.0.0.1", port=0)  # its own heartbeat fails too
        address = listener.start()
        try:
            with smtplib.SMTP(*address, local_hostname="client.example", timeout=30) as smtp:
                refused = smtp.sendmail("a@elsewhere.example", ["desk@beats.test"],
                                        b"From: a@elsewhere.example\r\nSubject: x\r\n\r\nhi\r\n")
            assert refused == {}
        finally:
            listener.stop()
    finally:
        ProcessHeartbeat.__table__.create(store.engine)
    assert beat.beat() and len(rows(store)) == 1  # and it recovers when the store does
