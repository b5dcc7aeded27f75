"""The delivery engine of alerts, run by the worker: a tailer that turns events into deliveries,
and a sender that makes them (a signed webhook, or a task).

Tailer. Events carry a commit-ordered `seq` (docs/events.md): once the tailer has seen seq N,
every event below N is visible or will never exist. It reads events with seq above the
`alert_cursors` row's `last_seq`, matches them against the enabled alerts of the same tenant (and
inbox), inserts one `webhook_deliveries` row per (event, alert) (unique: a second insert does
nothing) and moves the cursor in the same transaction, with a conditional UPDATE: two tailers
never both move it, so no event is missed and none turned into two rows.

Sender. Claims due rows (pending, or failed with a retry due) under a lease with a conditional
UPDATE (`FOR UPDATE SKIP LOCKED` on PostgreSQL), sends them from a thread pool with at most
`webhook_per_alert` in flight per alert (a slow receiver never holds up the others), and records
each outcome only while the lease is still its own. A worker killed mid-send leaves rows leased;
when the lease runs out (longer than any one attempt) another claims them: at least once, and a
success is never sent again (a row that succeeded is never claimed). New deliveries the engine
has room for are written already leased by the tailer (`Lease`) and sent without a claim.

Steps. The engine's loop does all its store work in one transaction per step: record the
finished attempts, claim due rows, tail, write due offset deliveries (offsets.py); the sending
threads only do HTTP (kept-alive connections: webhooks.Clients).
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Resolver
from appliance.ids import new_id
from appliance.models import Alert, AlertCursor, Event, WebhookDelivery
from appliance.models.alerts import webhook_msg_id
from appliance.services.automation import alerts as alerts_service
from appliance.services.automation import events, offsets, tailer, webhooks
from appliance.services.mail import notices

log = logging.getLogger("gentbox.webhooks")
TAILER = "alerts"  # the alert_cursors row of this tailer
TAIL_BATCH = 500  # events read per transaction
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
# Events and deliveries are read as plain rows (attribute access like the models'), not ORM
# objects: the engine's loop reads thousands a second and the ORM's bookkeeping was most of it.
# The hot statements are built once, in Core: the ORM's per-statement work and building each
# expression again were most of the loop's time (py-spy, docs/benchmarks.md).
_E = Event.__table__.c
_EVENT_COLUMNS = (_E.id, _E.seq, _E.type, _E.category, _E.tenant_id, _E.inbox_id, _E.resource_id,
                  _E.occurred_at, _E.actor_kind, _E.actor_id, _E.payload)
_EVENTS_AFTER = select(*_EVENT_COLUMNS).where(_E.seq > bindparam("t_last")).order_by(_E.seq).limit(bindparam("t_batch"))
_EVENTS_BY_ID = select(*_EVENT_COLUMNS).where(_E.id.in_(bindparam("t_ids", expanding=True)))


# --- tailer ------------------------------------------------------------------------------------
@dataclass
class Lease:
    """Fresh webhook deliveries the tailer leases to `owner` as it writes them, while `fits(alert)`
    allows (the engine's free threads and per-alert limit): the engine sends them at once, without
    claiming and loading them again. `taken`: (delivery row, event row, alert) of those written."""

    owner: str
    until: dt.datetime
    fits: Callable[[Alert], bool]
    taken: list = field(default_factory=list)


def tail(db: Session, *, batch: int = TAIL_BATCH, lease: Lease | None = None) -> int:
    """Turn the next events after the cursor into deliveries and move the cursor, in the caller's
    transaction; returns how many events were read (call again while it returns `batch`). With a
    lease, some new deliveries are written leased to its owner (`Lease.taken`)."""
    last = _cursor(db)
    rows = db.execute(_EVENTS_AFTER, {"t_last": last, "t_batch": batch}).all()
    if not rows:
        return 0
    alerts = _alerts_by_tenant(db, {event.tenant_id for event in rows if event.tenant_id})
    now, deliveries, leased = utcnow(), [], {}
    for event in rows:
        # An event of an inbox goes only to that inbox's alerts (alerts.matches): skip the rest unasked.
        key = (event.tenant_id, event.inbox_id) if event.inbox_id else event.tenant_id
        for alert in alerts.get(key, ()):
            if _wanted(alert, event):
                row = _delivery_row(event, alert, now)
                if lease is not None and alert.delivery_type == "webhook" and lease.fits(alert):
                    row["claimed_by"], row["claimed_until"] = lease.owner, lease.until
                    leased[row["id"]] = (row, event, alert)
                deliveries.append(row)
    moved = db.execute(update(AlertCursor).where(AlertCursor.name == TAILER, AlertCursor.last_seq == last)
                       .values(last_seq=rows[-1].seq, updated_at=now))
    if moved.rowcount != 1:
        return 0  # another tailer moved it first: its rows stand, ours would be the same (none written)
    if deliveries:
        insert = _INSERT[db.get_bind().dialect.name](WebhookDelivery.__table__).on_conflict_do_nothing(
            index_elements=["alert_id", "event_id"])
        if leased:  # only the rows actually written are ours to send (a conflict wrote none)
            written = set(db.execute(insert.returning(WebhookDelivery.__table__.c.id), deliveries).scalars())
            lease.taken.extend(item for delivery_id, item in leased.items() if delivery_id in written)
        else:
            db.execute(insert, deliveries)
    return len(rows)


def _cursor(db: Session) -> int:
    """The cursor's position, made at 0 the first time (alerts only take events after their creation)."""
    return tailer.position(db, TAILER)


def _alerts_by_tenant(db: Session, tenants: set[str]) -> dict[Any, list[Alert]]:
    """The enabled alerts by tenant id, and by (tenant id, inbox id) for those of an inbox."""
    found: dict[Any, list[Alert]] = {}
    if tenants:
        for alert in db.scalars(select(Alert).where(Alert.enabled.is_(True), Alert.tenant_id.in_(tenants))):
            found.setdefault(alert.tenant_id, []).append(alert)
            if alert.inbox_id:
                found.setdefault((alert.tenant_id, alert.inbox_id), []).append(alert)
    return found


def _wanted(alert: Alert, event: Event) -> bool:
    """The alerts service's rule (tenant, inbox, type, filter, a test to its own alert), for
    events that happened since the alert was made."""
    return event.occurred_at >= alert.created_at and alerts_service.matches(alert, event) \
        and not offsets.skips(alert, event)  # an offset alert got a scheduled event before it was due


def _delivery_row(event: Event, alert: Alert, now: dt.datetime) -> dict[str, Any]:
    return {"id": new_id("dlv"), "tenant_id": alert.tenant_id, "alert_id": alert.id, "event_id": event.id,
            "event_seq": event.seq, "webhook_id": webhook_msg_id(event.id, alert.id), "attempt": 0,
            "status": "pending", "next_attempt_at": now, "claimed_by": None, "claimed_until": None,
            "created_at": now, "updated_at": now}


# --- claiming ----------------------------------------------------------------------------------
_D, _A = WebhookDelivery.__table__.c, Alert.__table__.c
_DUE = (select(_D.id, _D.alert_id).join_from(WebhookDelivery.__table__, Alert.__table__, _A.id == _D.alert_id)
        .where(_D.status.in_(("pending", "failed")), _D.next_attempt_at <= bindparam("c_now"),
               or_(_D.claimed_until.is_(None), _D.claimed_until < bindparam("c_now")),
               _A.enabled.is_(True), _D.alert_id.not_in(bindparam("c_full", expanding=True)))
        .order_by(_D.next_attempt_at).limit(bindparam("c_limit")))
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True, of=WebhookDelivery.__table__)
# Alerts as rows (attribute access like the model's) for the jobs; a task delivery loads its own.
_ALERTS_BY_ID = select(Alert.__table__).where(_A.id.in_(bindparam("c_ids", expanding=True)))
_SUCCESS_OF_ALERTS = (update(Alert.__table__).where(_A.id.in_(bindparam("c_ids", expanding=True)))
                      .values(last_success_at=bindparam("c_at"), failing_since=None))
_CLAIM = (update(WebhookDelivery.__table__)
          .where(_D.id.in_(bindparam("c_ids", expanding=True)),
                 or_(_D.claimed_until.is_(None), _D.claimed_until < bindparam("c_now")))
          .values(claimed_by=bindparam("c_owner"), claimed_until=bindparam("c_until"))
          .returning(_D.id, _D.alert_id, _D.event_id, _D.event_seq, _D.webhook_id, _D.claimed_until, _D.created_at,
                     _D.data))


def claim(db: Session, *, owner: str, limit: int, lease: float, busy: Counter, per_alert: int) -> list[Any]:
    """Lease up to `limit` due deliveries to `owner`, at most `per_alert` in flight per alert
    counting `busy` (this process's sends); returns the claimed rows (id, alert_id, event_id, …)."""
    now = utcnow()
    # Alerts at their limit are left out of the query itself: a slow receiver's backlog at the
    # head of the due order must not hide the other alerts' deliveries behind it.
    full = [alert_id for alert_id, count in busy.items() if count >= per_alert]
    query = _DUE_LOCKED if db.get_bind().dialect.name == "postgresql" else _DUE
    counts, picked = Counter(busy), []
    for delivery_id, alert_id in db.execute(query, {"c_now": now, "c_full": full, "c_limit": limit * 4}):
        if counts[alert_id] < per_alert and len(picked) < limit:
            counts[alert_id] += 1
            picked.append(delivery_id)
    if not picked:
        return []
    until = now + dt.timedelta(seconds=lease)
    return db.execute(_CLAIM, {"c_ids": picked, "c_now": now, "c_owner": owner, "c_until": until}).all()


# --- recording ---------------------------------------------------------------------------------
def _mine(db: Session, delivery_id: str, owner: str) -> WebhookDelivery | None:
    """The delivery, locked, if its lease is still owner's (else another worker has it now)."""
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_by == owner)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.scalar(query)


Outcome = tuple[str, webhooks.Result, dt.datetime, str]  # delivery id, result, when, alert id


def record(db: Session, settings: Settings, owner: str, done: list[Outcome]) -> int:
    """Store attempts' outcomes, (delivery id, Result, when, alert id) each, and what they mean for
    their alerts; only those whose lease is still owner's (returns how many)."""
    ok = [d for d in done if d[1].ok]
    failed = [d for d in done if not d[1].ok]
    # Failures first: an alert with both in one batch ends with its success (failing_since cleared).
    recorded = _record_failures(db, settings, owner, failed) if failed else 0
    return recorded + (_record_successes(db, owner, ok) if ok else 0)


_SUCCEEDED = (update(WebhookDelivery.__table__)
              .where(WebhookDelivery.__table__.c.id == bindparam("b_id"),
                     WebhookDelivery.__table__.c.claimed_by == bindparam("b_owner"))
              .values(attempt=WebhookDelivery.__table__.c.attempt + 1, status="succeeded", next_attempt_at=None,
                      response_status=bindparam("b_status"), duration_ms=bindparam("b_ms"), error=None,
                      claimed_by=None, claimed_until=None, updated_at=bindparam("b_now")))


def _record_successes(db: Session, owner: str, done: list[Outcome]) -> int:
    """Successes (the common case) in two statements: the deliveries still leased to owner
    (an executemany UPDATE guarded by the lease) and their alerts' last success."""
    found = db.execute(_SUCCEEDED, [{"b_id": delivery_id, "b_owner": owner, "b_status": result.status,
                                     "b_ms": result.duration_ms, "b_now": now} for delivery_id, result, now, _ in done])
    latest = max(now for _, _, now, _ in done)
    db.execute(_SUCCESS_OF_ALERTS, {"c_ids": sorted({alert_id for _, _, _, alert_id in done}), "c_at": latest})
    return found.rowcount if found.rowcount is not None and found.rowcount >= 0 else len(done)


def _record_failures(db: Session, settings: Settings, owner: str, done: list[Outcome]) -> int:
    """Failures: the retry each gets depends on its attempts and its alert's schedule."""
    query = (select(WebhookDelivery.id, WebhookDelivery.alert_id, WebhookDelivery.attempt)
             .where(WebhookDelivery.id.in_([d[0] for d in done]), WebhookDelivery.claimed_by == owner)
             .order_by(WebhookDelivery.id))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    mine = {row.id: {"id": row.id, "alert_id": row.alert_id, "attempt": row.attempt} for row in db.execute(query)}
    alerts = {a.id: a for a in db.scalars(select(Alert).where(Alert.id.in_({d["alert_id"] for d in mine.values()})))}
    changed: dict[str, dict[str, Any]] = {}
    for delivery_id, result, now, _ in sorted(done, key=lambda d: d[2]):
        if delivery_id in mine:
            changed[delivery_id] = _outcome(db, settings, mine[delivery_id], alerts[mine[delivery_id]["alert_id"]],
                                            result, now)
    if changed:
        db.execute(update(WebhookDelivery), list(changed.values()))
    return len(mine)


def _outcome(db: Session, settings: Settings, delivery: dict[str, Any], alert: Alert, result: webhooks.Result,
             now: dt.datetime) -> dict[str, Any]:
    """The delivery's new values after one attempt (its `attempt` counted in `delivery`), and
    the alert's state changed for it."""
    delivery["attempt"] += 1
    values = {"id": delivery["id"], "attempt": delivery["attempt"], "response_status": result.status,
              "duration_ms": result.duration_ms, "error": result.error, "claimed_by": None, "claimed_until": None,
              "updated_at": now}
    if result.ok:
        alert.last_success_at, alert.failing_since = now, None
        return {**values, "status": "succeeded", "next_attempt_at": None}
    retry = None if result.gone else webhooks.next_attempt(alert.backoff, alert.retries, delivery["attempt"], now,
                                                          result.retry_after)
    alert.failing_since = alert.failing_since or now
    if result.gone:
        disable(db, settings, alert, "gone")
    elif now - alert.failing_since >= webhooks.FAILING_DISABLES_AFTER:
        disable(db, settings, alert, "failing")
    return {**values, "status": "failed" if retry is not None or result.gone else "exhausted",
            "next_attempt_at": retry}


def disable(db: Session, settings: Settings, alert: Alert, reason: str) -> None:
    """Turn the alert off (`alert.disabled`, by the worker) and mail the tenant's owner."""
    if not alert.enabled:
        return
    alerts_service.disable_alert(db, alert, reason, actor=events.WORKER)
    notices.alert_disabled(db, settings, alert, _REASONS[reason])


_REASONS = {"gone": "the receiver answered 410 Gone", "failing": "it failed without a success for 5 days"}


def make_task(db: Session, delivery_id: str, owner: str) -> bool:
    """A task alert's delivery: the task in the alert's inbox (the alerts service writes it; a
    unique index keeps it to one per event and alert) and the delivery done, in one transaction."""
    delivery = _mine(db, delivery_id, owner)
    if delivery is None:
        return False
    alert, now = db.get(Alert, delivery.alert_id), utcnow()
    event = db.scalar(select(Event).where(Event.id == delivery.event_id))
    if event is None and delivery.data:  # an offset delivery: the event is not emitted yet
        event = offsets.event_of(delivery.data, delivery.tenant_id)
    if event is not None:  # a purged event makes no task
        alerts_service.deliver_task(db, alert, event)
    delivery.attempt += 1
    delivery.status, delivery.next_attempt_at, delivery.error = "succeeded", None, None
    delivery.claimed_by = delivery.claimed_until = None
    delivery.updated_at = now
    alert.last_success_at, alert.failing_since = now, None
    return True


# --- the engine --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One claimed webhook, with everything its sending thread needs (no store access there)."""

    delivery_id: str
    alert_id: str
    target: str
    secrets: tuple[str, ...]
    msg_id: str
    data: dict[str, Any]
    leased_until: dt.datetime


class Dispatcher:
    """Tail and send in one process: `run_until_idle` for tests and `--once`, `serve` for the worker.

    The sending threads only do HTTP: the loop claims and loads a batch of jobs in one transaction
    and records the finished ones in one transaction (a commit per attempt would cap the rate at
    the store's commit rate)."""

    def __init__(self, store: Store, settings: Settings, resolver: Resolver, name: str) -> None:
        self.store, self.settings, self.resolver, self.name = store, settings, resolver, name
        self.pool = ThreadPoolExecutor(max_workers=settings.webhook_concurrency, thread_name_prefix="webhook")
        self.busy: Counter = Counter()  # alert id -> sends in flight (or queued) in this process
        self.running: dict[Future, str] = {}
        self.results: queue.SimpleQueue = queue.SimpleQueue()  # Outcomes to record
        attempt = settings.webhook_timeout + settings.dns_timeout * 2  # DNS (A, AAAA), then the POST
        self._attempt_time = dt.timedelta(seconds=attempt)
        # Longer than any attempt, a wait in the pool's queue (about one more) and the recording
        # after it: a live lease is never taken over.
        self.lease = attempt * 3 + 5
        self._scanned = -float("inf")  # monotonic time of the last offset scan
        self.clients = webhooks.Clients()  # kept-alive connections to the targets
        self._unsealed: dict[tuple, tuple[str, ...]] = {}  # see _job
        self._bodies: dict[int, tuple[dict, int, bytes]] = {}  # see _body

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.clients.close()

    @staticmethod
    def tail_all(db: Session, lease: Lease | None = None) -> int:
        """Turn every event committed so far into deliveries, in the caller's transaction;
        returns how many events were read."""
        total = 0
        while True:
            read = tail(db, lease=lease)
            total += read
            if read < TAIL_BATCH:
                return total

    def _finished(self) -> list[Outcome]:
        done = []
        while not self.results.empty():
            done.append(self.results.get())
        return done

    def _record(self, db: Session, done: list[Outcome]) -> None:
        recorded = record(db, self.settings, self.name, done)
        if recorded < len(done):
            log.warning("webhooks: %d lease(s) ran out before the outcome was recorded", len(done) - recorded)

    def record_finished(self) -> int:
        """Record the attempts finished so far, in one transaction; returns how many."""
        done = self._finished()
        if done:
            with self.store.session() as db:
                self._record(db, done)
        return len(done)

    def scan_offsets(self, db: Session, force: bool = False) -> int:
        """Write the offset deliveries due by now (offsets.py), at most once per poll interval
        unless forced: one query per offset alert."""
        if not force and time.monotonic() - self._scanned < self.settings.worker_poll_interval:
            return 0
        self._scanned = time.monotonic()
        return offsets.scan(db, utcnow())

    def step(self, force_scan: bool = False) -> int:
        """Record the finished attempts, tail, write due offset deliveries, then claim what is due
        (up to twice the threads) and start it: all in one transaction, because on SQLite each
        takes the write lock (waiting for the committers) and ends in an fsync; the engine's rate
        was that of its transactions. A failed transaction keeps the outcomes for the next step."""
        done = self._finished()
        # Claimed rows queue in the pool beyond its threads (the lease outlasts the wait), so a
        # thread that finishes finds the next one ready; per alert the limit counts queued ones.
        free = self.settings.webhook_concurrency * 2 - len(self.running)
        secrets: dict[str, tuple[str, ...]] = {}
        try:
            with self.store.session() as db:
                if done:
                    self._record(db, done)
                # Due rows first (retries, and what an earlier tail left unleased), then the new
                # events, leased as they are written while threads and per-alert room are left.
                claimed = claim(db, owner=self.name, limit=free, lease=self.lease, busy=self.busy,
                                per_alert=self.settings.webhook_per_alert) if free > 0 else []
                jobs = self._load(db, claimed, secrets) if claimed else []
                lease = self._fresh_lease(free - len(claimed), jobs)
                self.tail_all(db, lease)
                rendered: dict[str, dict[str, Any]] = {}  # an event's jobs share one dict (and body: _body)
                jobs += [self._job(row["id"], alert, row["webhook_id"], _rendered(rendered, event), lease.until,
                                   secrets) for row, event, alert in lease.taken]
                self.scan_offsets(db, force_scan)
        except Exception:
            for outcome in done:
                self.results.put(outcome)  # recorded by the next step (the lease outlasts it)
            raise
        for job in jobs:
            self.busy[job.alert_id] += 1
            self.running[self.pool.submit(self._send, job)] = job.alert_id
        return len(claimed) + len(lease.taken)

    def _fresh_lease(self, room: int, claimed: list[Job]) -> Lease:
        """A lease for the tailer: up to room new deliveries, within each alert's limit."""
        counts = Counter(self.busy)
        counts.update(job.alert_id for job in claimed)
        left = [room]

        def fits(alert: Alert) -> bool:
            if left[0] <= 0 or counts[alert.id] >= self.settings.webhook_per_alert:
                return False
            counts[alert.id] += 1
            left[0] -= 1
            return True
        return Lease(self.name, utcnow() + dt.timedelta(seconds=self.lease), fits)

    def _job(self, delivery_id: str, alert: Alert, msg_id: str, data: dict[str, Any], until: dt.datetime,
             secrets: dict[str, tuple[str, ...]]) -> Job:
        if alert.id not in secrets:  # looked at once per alert and step
            now = utcnow()
            # Unsealed once per alert and secret: the key names the sealed secrets and whether the
            # previous one still signs, so a rotation (or its 24 h running out) unseals again.
            key = (alert.id, alert.secret_sealed, alert.previous_secret_sealed,
                   bool(alert.previous_secret_until and now < alert.previous_secret_until))
            if key not in self._unsealed:
                if len(self._unsealed) > 10_000:
                    self._unsealed.clear()
                self._unsealed[key] = tuple(alerts_service.live_secrets(self.settings, alert, now))
            secrets[alert.id] = self._unsealed[key]
        return Job(delivery_id, alert.id, alert.target or "", secrets[alert.id], msg_id, data, until)

    def _load(self, db: Session, deliveries: list[Any], secrets: dict[str, tuple[str, ...]]) -> list[Job]:
        """The claimed webhooks (claim's rows) as jobs; task deliveries are made here and now (no network)."""
        jobs = []
        alerts = {a.id: a for a in db.execute(_ALERTS_BY_ID, {"c_ids": sorted({d.alert_id for d in deliveries})})}
        found = {e.id: e for e in db.execute(_EVENTS_BY_ID, {"t_ids": sorted({d.event_id for d in deliveries})})}
        rendered: dict[str, dict[str, Any]] = {}
        for delivery in deliveries:
            alert = alerts[delivery.alert_id]
            if alert.delivery_type == "task":
                make_task(db, delivery.id, self.name)
                continue
            event = found.get(delivery.event_id)
            data = (_rendered(rendered, event) if event is not None
                    else delivery.data or _test_event(delivery, alert))  # an offset delivery carries its event
            jobs.append(self._job(delivery.id, alert, delivery.webhook_id, data, delivery.claimed_until, secrets))
        return jobs

    def reap(self, timeout: float | None) -> None:
        """Wait up to timeout for a send to finish; forget the finished ones."""
        if not self.running:
            return
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            alert_id = self.running.pop(future)
            self.busy[alert_id] -= 1
            if self.busy[alert_id] <= 0:
                del self.busy[alert_id]

    def run_until_idle(self, max_steps: int = 10_000) -> int:
        """Tail and send until nothing is due and nothing runs (tests, `gentbox worker --once`);
        returns how many deliveries it claimed."""
        claimed = 0
        for step in range(max_steps):
            hungry = self._hungry()  # not hungry: enough sends are running
            started = self.step(force_scan=step == 0) if hungry else 0
            claimed += started
            if hungry and not started and not self.running and self.results.empty():
                return claimed
            self.reap(None)
        return claimed

    def serve(self, stopping: threading.Event) -> None:
        """Until stopping is set: tail and send, waking when a send ends or every poll interval."""
        while not stopping.is_set():
            try:
                if self._hungry():
                    self.step()
            except Exception:  # noqa: BLE001 - a store outage must not end the engine; try again soon
                log.exception("webhooks: recording, tailing or claiming failed")
            if self.running:
                self.reap(self.settings.worker_poll_interval)
            else:
                stopping.wait(self.settings.worker_poll_interval)
        wait(list(self.running))
        self.record_finished()

    def _hungry(self) -> bool:
        """Claim (and record) again once half of the queued and running sends are done: batches,
        not a transaction per finished send."""
        return len(self.running) <= self.settings.webhook_concurrency

    def start(self, stopping: threading.Event) -> threading.Thread:
        """serve() in a thread of its own (the worker's main loop is the mail queue's)."""
        thread = threading.Thread(target=self.serve, args=(stopping,), name="webhooks", daemon=True)
        thread.start()
        return thread

    def _body(self, data: dict[str, Any], now: dt.datetime) -> bytes:
        """The request body, serialised once per event dict and second (the jobs of one event to
        several alerts share the dict, so their bodies are equal within a second)."""
        stamp = int(now.timestamp())
        kept = self._bodies.get(id(data))
        if kept is not None and kept[0] is data and kept[1] == stamp:
            return kept[2]
        body = webhooks.body_for(data, now)
        if len(self._bodies) > 4096:
            self._bodies.clear()
        self._bodies[id(data)] = (data, stamp, body)  # the dict is kept: its id is not reused meanwhile
        return body

    def _send(self, job: Job) -> None:
        """One attempt (HTTP only); its outcome queued for the loop to record."""
        try:
            now = utcnow()
            if job.leased_until - now < self._attempt_time:
                return  # waited too long in the queue: the lease could run out mid-send; it is claimed again later
            body = self._body(job.data, now)
            result = webhooks.send(self.settings, self.resolver, job.target,
                                   webhooks.headers_for(job.secrets, job.msg_id, now, body), body, now, self.clients)
            self.results.put((job.delivery_id, result, utcnow(), job.alert_id))
        except Exception:  # noqa: BLE001 - the lease runs out and the delivery is tried again
            log.exception("webhooks: delivering %s failed", job.delivery_id)


def _rendered(rendered: dict[str, dict[str, Any]], event: Any) -> dict[str, Any]:
    """The event as the API renders it, made once per event in one step (shared by its jobs)."""
    data = rendered.get(event.id)
    if data is None:
        data = rendered[event.id] = events.event_to_dict(event)
    return data


def _test_event(delivery: WebhookDelivery, alert: Alert) -> dict[str, Any]:
    """The event of a delivery whose event row is gone (purged) or never was (a test)."""
    return {"event_id": delivery.event_id, "seq": delivery.event_seq, "type": "webhook.test", "category": "alerts",
            "inbox_id": alert.inbox_id, "resource_id": alert.id, "occurred_at": events.iso(delivery.created_at),
            "actor": {"kind": "system", "id": None}, "payload": {"alert_id": alert.id}}
