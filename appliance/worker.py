"""The delivery worker (`gentbox worker`): claim due queue rows, deliver them, record the outcome.

Each pass claims a batch under a lease in one short transaction, delivers the rows concurrently
in a thread pool (remote rows over SMTP, hosted rows locally in the transaction that records
them). Remote rows share kept SMTP sessions (appliance/delivery_sessions.py: several messages per
connection, bounded per destination and in total, closed when idle), and their outcomes are
recorded several per transaction (Recorder: the thread that commits takes every outcome waiting).
A worker that dies mid-delivery leaves its rows leased; once the lease runs out another pass
claims them again.

Every pass (and every poll interval of the serve loop) also fires the scheduled events that are
due (appliance/services/automation/schedule.py); alerts' deliveries run in their own thread while
serving (dispatch.py), and in `run_until_idle` (`gentbox worker --once`) after the mail passes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from sqlalchemy.orm import Session

from appliance import delivery, delivery_sessions
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Resolver
from appliance.heartbeat import start_heartbeat
from appliance.ids import new_id
from appliance.logging_setup import set_log_fields
from appliance.services import register_handlers
from appliance.services.automation import dispatch, events, schedule, sequences, workflow_runner
from appliance.services.governance import approvals, audit, compliance, export
from appliance.services.intelligence import enrich
from appliance.services.mail import broadcast, forwarding, imports, mtasts_policy, outbound, outofoffice
from appliance.services.workspace import blobs, contact_shares, imip
from appliance.services.intelligence import activity
from appliance.services.intelligence import models as intelligence_models

log = logging.getLogger("gentbox.worker")
EVENT_PURGE_INTERVAL = 3600.0  # seconds between sweeps of events past event_retention_days
EVENT_PURGE_BATCH = 1000  # events deleted per transaction (SQLite's write lock is held that long)
SCHEDULE_BATCH = 100  # schedule rows fired per read (each in its own transaction)
MOVE_BATCHES = 25  # backfill batches per worker pass (issue 19): about 5,000 attachments, then other work


class Worker:

    def __init__(self, store: Store, settings: Settings, *, resolver: Resolver | None = None,
                 name: str | None = None) -> None:
        register_handlers()
        self.store = store
        self.settings = settings
        self.resolver = resolver or Resolver(settings)
        self.name = name or f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id('wk')[-6:]}"
        self.pool = ThreadPoolExecutor(max_workers=settings.delivery_concurrency, thread_name_prefix="deliver")
        self.sessions = delivery_sessions.Sessions(settings)  # SMTP connections kept between messages
        self.recorder = Recorder(store, settings)
        self.attachments_moved = False  # the backfill found no attachment left with its bytes
        self.stopping = threading.Event()
        self.hooks = dispatch.Dispatcher(store, settings, self.resolver, self.name)  # alerts (issue 15)
        intelligence_models.configure(settings)  # external models for the enrichment run (issue 21)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A unit of work of the event readers, taken in turn with the listener's committer
        (Store.writer_turn: on SQLite the write lock passes on at once, not after SQLite's sleeps
        of up to 100 ms; the listener's 250s wait for those). Nothing inside takes a turn again."""
        with self.store.writer_turn(), self.store.session() as db:
            yield db

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.sessions.close_idle()
        self.hooks.close()

    def purge_events(self, now: dt.datetime | None = None) -> int:
        """Delete the events past settings.event_retention_days, a batch per transaction."""
        total = 0
        while True:
            with self.store.session() as db:
                purged = events.purge_events(db, retention_days=self.settings.event_retention_days, now=now,
                                             batch=EVENT_PURGE_BATCH)
            total += purged
            if purged < EVENT_PURGE_BATCH:
                return total

    def fire_schedule(self, now: dt.datetime | None = None) -> int:
        """Emit the scheduled events due by now (anniversaries, reminders: schedule.py), as the worker."""
        fired = 0
        with events.acting_as(events.WORKER):
            while True:
                batch = schedule.fire_due(self.store.session, now or utcnow(), limit=SCHEDULE_BATCH)
                fired += batch
                if batch < SCHEDULE_BATCH:
                    return fired

    def read_invitations(self) -> int:
        """Apply the iMIP invitations among newly received mail (issue 18), after it is stored."""
        total = 0
        while True:
            with self.writing() as db:
                read = imip.process_received(db)
            total += read
            if read < imip.BATCH:
                return total

    def run_once(self) -> int:
        """One pass: fire due scheduled events, queue new system mail, claim what is due, deliver
        it; returns rows handled (mail queue rows and scheduled events fired)."""
        fired = self.fire_schedule()
        with self.store.session() as db:
            outbound.enqueue_system_mail(db, self.settings)
        self.read_invitations()
        with self.store.session() as db, events.acting_as(events.WORKER):
            approvals.expire_approvals(db, utcnow())  # held actions past their expiry: never carried out
        self.answer_out_of_office()  # before claiming, so this pass also delivers the replies
        self.run_sender_automation()  # issue 20: forwarding and sequence steps, delivered this pass too
        self.run_workflows()  # issue 20: before claiming too, so their replies and forwards leave now
        sent = self.send_workflow_webhooks()
        self.complete_broadcasts()
        fired += self.run_compliance()
        self.enrich_received()
        self.project_activity()
        fired += self.move_attachments()
        with self.store.session() as db:
            jobs = outbound.claim(db, self.settings, owner=self.name, limit=self.settings.delivery_concurrency * 4)
        if not jobs:
            return fired + sent
        list(self.pool.map(self._handle, jobs))
        self.sessions.close_idle()  # a pass ends with no connection left open (`--once`, tests)
        return fired + sent + len(jobs)

    def run_imports(self) -> int:
        """Run the waiting imports from other IMAP servers to their end (issue 25); how many ran."""
        return imports.run_claimed(self.store, self.settings, self.name)

    def _imports_loop(self) -> None:
        """serve_forever's imports: a long import never holds up delivery (its own thread)."""
        while not self.stopping.is_set():
            try:
                self.run_imports()
            except Exception:  # noqa: BLE001 - a store outage must not end the worker; retry soon
                log.exception("worker: running imports failed")
            self.stopping.wait(self.settings.worker_poll_interval)

    def run_compliance(self) -> int:
        """Build queued exports, carry out due erasures and retention runs (issue 23); returns how many."""
        return export.run_pending(self.store.session, self.settings) + compliance.run_due(self.store.session,
                                                                                          self.settings)

    def complete_broadcasts(self) -> int:
        """Announce the broadcasts whose every message has left (`broadcast.completed`)."""
        with self.store.session() as db, events.acting_as(events.WORKER):
            return broadcast.complete_finished(db)

    def project_activity(self) -> int:
        """Project new events into the activity timeline and the relationship graph (issue 21)."""
        total = 0
        while True:
            with self.writing() as db:
                read = activity.project(db)
            total += read
            if read < activity.BATCH:
                return total

    def answer_out_of_office(self) -> int:
        """Read the received mail since the last pass and queue the out-of-office replies due."""
        total = 0
        while True:
            with self.writing() as db, events.acting_as(events.WORKER):
                read = outofoffice.tail(db, self.settings)
            total += read
            if read < outofoffice.BATCH:
                return total

    def enrich_received(self) -> int:
        """Judge the mail received since the last pass (phishing verdict, next step: issue 21):
        each batch is judged on a read snapshot (no write lock: the listener keeps committing
        meanwhile), then its results are stored and the cursor moved in one short write."""
        total = 0
        while True:
            with self.store.read_sessions() as db:
                plan = enrich.plan(db)
            with self.writing() as db, events.acting_as(events.WORKER):
                read = enrich.apply(db, plan)
            total += read
            if read < enrich.BATCH:
                return total

    def run_sender_automation(self) -> int:
        """Forward what inboxes with forwarding received, send due sequence steps and end
        enrollments on replies and bounces (issue 20), each reader through the tailer."""
        total = 0
        for reader in (forwarding, sequences):
            while True:
                with self.writing() as db, events.acting_as(events.WORKER):
                    read = reader.tail(db, self.settings)
                total += read
                if read < reader.BATCH:
                    break
        return total

    def run_workflows(self) -> int:
        """Run the workflows of the events since the last pass (issue 20: workflow_runner.py)."""
        total = 0
        while True:
            with self.writing() as db:
                read = workflow_runner.tail(db, self.settings)
            total += read
            if read < workflow_runner.BATCH:
                return total

    def send_workflow_webhooks(self) -> int:
        """Send the workflows' due webhook actions; returns how many were attempted."""
        return workflow_runner.send_due(self.store, self.settings, self.resolver, self.name)

    def move_attachments(self, max_batches: int = MOVE_BATCHES) -> int:
        """Move old attachments' bytes into the blob store (issue 19's backfill), a few short
        batches per call, each its own transaction, so mail keeps flowing in between; returns
        how many moved. Once a batch finds none left it is not asked again: new attachments are
        stored as blobs, so nothing joins the backlog (no write transaction each poll for nothing)."""
        total = 0
        for _ in range(max_batches if not self.attachments_moved else 0):
            with self.store.session() as db:
                read = blobs.move_attachments(db)
            if read is None:  # another node holds the backfill's lock: it moves them
                break
            total += read
            if read == 0:
                self.attachments_moved = True
            if read < blobs.MOVE_BATCH:
                break
        return total

    def run_until_idle(self, max_passes: int = 100) -> int:
        """Passes until nothing is due (tests and `gentbox worker --once`): the scheduler, the mail
        queue, and the alerts' deliveries (tail and send until none is due); returns mail rows
        and scheduled events handled plus deliveries attempted."""
        total = 0
        for _ in range(max_passes):
            handled = self.run_once() + self.hooks.run_until_idle() + self.run_imports()
            if not handled:
                break
            total += handled
        return total

    def serve_forever(self) -> None:
        """Keep every delivery thread busy: claim more as soon as one frees up, so one slow
        remote host never holds up the rest (no head-of-line blocking between passes)."""
        running: set[Future] = set()
        limit = self.settings.delivery_concurrency
        checked_system_mail = 0.0
        heartbeat = start_heartbeat(self.store, "worker")
        hooks = self.hooks.start(self.stopping)  # webhooks and task alerts in their own thread
        importing = threading.Thread(target=self._imports_loop, name="imports", daemon=True)
        importing.start()
        try:
            with events.acting_as(events.WORKER):  # this thread's events (approvals expired)
                self._serve(running, limit, checked_system_mail)
        finally:
            self.stopping.set()
            hooks.join()
            importing.join(timeout=self.settings.import_timeout)
            heartbeat.stop()

    def _serve(self, running: set[Future], limit: int, checked_system_mail: float) -> None:
        purged_at, scheduled_at = -EVENT_PURGE_INTERVAL, -self.settings.worker_poll_interval
        while not self.stopping.is_set():
            if time.monotonic() - purged_at >= EVENT_PURGE_INTERVAL:
                purged_at = time.monotonic()
                try:
                    self.purge_events()
                    with self.store.session() as db:
                        audit.checkpoint_due(db, self.settings.secret_key)  # daily, per chain (issue 23)
                        contact_shares.purge_shares(db)  # issue 17: shares expired or resolved long ago
                    with self.store.session() as db:
                        activity.purge_activity(db)  # issue 21: activity older than two years
                except Exception:  # noqa: BLE001 - old events and checkpoints can wait for the next sweep
                    log.exception("worker: purging old events or checkpointing the audit log failed")
            if time.monotonic() - scheduled_at >= self.settings.worker_poll_interval:
                # Every poll interval, even with every delivery slot busy: a reminder is due on time.
                scheduled_at = time.monotonic()
                try:
                    self.fire_schedule()
                except Exception:  # noqa: BLE001 - a store outage must not end the worker; retry soon
                    log.exception("worker: firing scheduled events failed")
            self.sessions.close_idle(self.settings.delivery_idle_timeout)
            if len(running) < limit:
                try:
                    if time.monotonic() - checked_system_mail >= self.settings.worker_poll_interval:
                        checked_system_mail = time.monotonic()
                        with self.store.session() as db:
                            outbound.enqueue_system_mail(db, self.settings)
                        with self.store.session() as db:
                            approvals.expire_approvals(db, utcnow())
                        self.answer_out_of_office()
                        self.run_sender_automation()
                        self.run_workflows()
                        self.send_workflow_webhooks()
                        self.complete_broadcasts()
                        self.read_invitations()
                        self.run_compliance()
                        self.enrich_received()
                        self.project_activity()
                        self.move_attachments()
                    with self.store.session() as db:
                        jobs = outbound.claim(db, self.settings, owner=self.name, limit=limit - len(running))
                except Exception:  # noqa: BLE001 - a store outage must not end the worker; retry soon
                    log.exception("worker: claiming failed")
                    jobs = []
                running |= {self.pool.submit(self._handle, job) for job in jobs}
            if running:
                # Wake when a delivery finishes (a slot is free), or after the poll interval, to
                # look for newly due mail and scheduled events (even with every slot busy).
                done, _ = wait(running, timeout=self.settings.worker_poll_interval, return_when=FIRST_COMPLETED)
                running -= done
            else:
                self.stopping.wait(self.settings.worker_poll_interval)
        wait(running)

    def _mta_sts(self, domain: str) -> mtasts_policy.Policy | None:
        """The recipient domain's MTA-STS policy (issue 14); none applies through a smarthost."""
        if self.settings.relay_host:
            return None
        return mtasts_policy.policy_for(self.store, self.settings, self.resolver, domain)

    def _handle(self, job: outbound.Job) -> None:
        set_log_fields(queue_id=job.queue_id)  # this delivery thread's records name the row
        with events.acting_as(events.WORKER):  # delivered, deferred, bounced: the worker's doing
            self._deliver(job)

    def _deliver(self, job: outbound.Job) -> None:
        try:
            if job.local:
                with self.store.session() as db:
                    outcomes = outbound.deliver_locally(db, self.settings, job)
                    if not outbound.record(db, self.settings, job, outcomes):
                        db.rollback()  # another worker owns the row now: store nothing twice
                return
            results = delivery.deliver(self.settings, self.resolver, job.domain, job.mail_from,
                                       list(job.recipients.values()), job.raw,
                                       self._mta_sts(job.domain), self.sessions) if job.recipients else {}
            by_address = {address: rcpt_id for rcpt_id, address in job.recipients.items()}
            outcomes = {by_address[address]: outbound.Reply(r.code, r.text, r.host)
                        for address, r in results.items() if address in by_address}
            self.recorder.record(job, outcomes)
        except Exception:  # noqa: BLE001 - the row stays leased and is retried when the lease ends
            log.exception("worker: delivering %s failed", job.queue_id)


class Recorder:
    """Delivery outcomes written several per transaction (group commit): a thread hands its
    outcome in, then waits its turn to commit; whichever thread gets the turn writes every outcome
    waiting by then (up to RECORD_BATCH) in one transaction, so a busy worker commits once for many
    deliveries. Each outcome is written (or found written) before record() returns."""

    RECORD_BATCH = 64

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._turn = threading.Lock()  # one committing thread at a time
        self._waiting: list[list] = []  # [job, outcomes, written]
        self._guard = threading.Lock()

    def record(self, job: outbound.Job, outcomes: dict[str, outbound.Reply]) -> None:
        """Record one attempt's outcomes (see outbound.record), batched with the others waiting."""
        item = [job, outcomes, False]
        with self._guard:
            self._waiting.append(item)
        while not item[2]:
            with self._turn:
                if item[2]:
                    return
                with self._guard:
                    batch, self._waiting = self._waiting[:self.RECORD_BATCH], self._waiting[self.RECORD_BATCH:]
                self._write(batch)

    def _write(self, batch: list[list]) -> None:
        # One lock order for every batch (messages, then rows), so two workers never deadlock.
        batch.sort(key=lambda item: (item[0].message_id or "", item[0].queue_id))
        try:
            with self.store.session() as db:
                lost = [item[0].queue_id for item in batch
                        if not outbound.record(db, self.settings, item[0], item[1])]
        except Exception:  # noqa: BLE001 - one bad row must not cost the others theirs: one by one
            log.exception("worker: recording %d outcomes together failed; recording them one by one", len(batch))
            lost = [item[0].queue_id for item in batch if not self._write_one(item)]
        for item in batch:
            item[2] = True
        for queue_id in lost:
            log.warning("worker: lease on %s was lost before its outcome was recorded", queue_id)

    def _write_one(self, item: list) -> bool:
        try:
            with self.store.session() as db:
                return outbound.record(db, self.settings, item[0], item[1])
        except Exception:  # noqa: BLE001 - the row stays leased and is retried when the lease ends
            log.exception("worker: recording the outcome of %s failed", item[0].queue_id)
            return True
