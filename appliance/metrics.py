"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Mail counters and delivery latency come from the store (the append-only events table), so they
hold across processes and restarts: every web process answers the same numbers. Counting is
cheap: the part of the events table older than SETTLE_SECONDS is counted once per process and
cached by id (ids are time-sortable), and each scrape counts only the recent range on the primary
key. HTTP latency is measured in each web process (HttpHistogram); each process reports its
histogram with its heartbeat, and /metrics adds up every web process's last report.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import Counter
from typing import Iterable

from sqlalchemy import func, select

from appliance.clock import utcnow
from appliance.db import Store
from appliance.heartbeat import KINDS, stale_after
from appliance.models import Event, Message, OutboundQueue, ProcessHeartbeat

SETTLE_SECONDS = 300  # events older than this are assumed committed: counted once, then cached
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 5 * 86400.0)
MAIL_COUNTERS = {
    "message.received": ("gentbox_messages_received_total", "Messages received over SMTP and stored."),
    "message.sent": ("gentbox_messages_sent_total", "Messages accepted for sending (queued)."),
    "message.delivered": ("gentbox_messages_delivered_total",
                          "Deliveries: a message handed to one recipient domain's server (or delivered locally)."),
    "message.bounced": ("gentbox_messages_bounced_total", "Messages that bounced for one or more recipients."),
}
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # appliance/ids.py's Crockford base32


def id_floor(prefix: str, when: dt.datetime) -> str:
    """The smallest id of prefix made at `when` or later (ids sort by their millisecond part)."""
    millis, out = int(when.timestamp() * 1000), []
    for _ in range(10):
        millis, rem = divmod(millis, 32)
        out.append(_ALPHABET[rem])
    return f"{prefix}_{''.join(reversed(out))}{'0' * 16}"


# --- histograms ------------------------------------------------------------------------------
class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf) and the sum, per label tuple."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            series[index] += 1
            series[-1] += value

    def snapshot(self) -> dict[tuple[str, ...], list[float]]:
        with self._lock:
            return {labels: list(series) for labels, series in self._series.items()}

    def merge(self, other: dict[tuple[str, ...], list[float]]) -> None:
        with self._lock:
            for labels, series in other.items():
                mine = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
                if len(series) == len(mine):
                    for i, value in enumerate(series):
                        mine[i] += value


class HttpHistogram(Histogram):
    """Request latency of one web process by (method, route); JSON-able for its heartbeat."""

    def __init__(self) -> None:
        super().__init__(HTTP_BUCKETS)

    def to_json(self) -> dict:
        return {"http": {f"{m} {r}": s for (m, r), s in self.snapshot().items()}}

    @staticmethod
    def from_json(data: dict | None) -> dict[tuple[str, ...], list[float]]:
        out: dict[tuple[str, ...], list[float]] = {}
        for key, series in ((data or {}).get("http") or {}).items():
            method, _, route = key.partition(" ")
            out[(method, route)] = [float(v) for v in series]
        return out


# --- what the store says ---------------------------------------------------------------------
class StoreMetrics:
    """The mail counters and delivery latency of one process, with the settled part cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled_below = "evt_"  # every event with a smaller id is in the cache
        self._counts: Counter[str] = Counter()
        self._latency = Histogram(DELIVERY_BUCKETS)

    def _count(self, db, low: str, high: str | None) -> tuple[Counter[str], Histogram]:  # noqa: ANN001
        in_range = [Event.id >= low] + ([Event.id < high] if high else [])
        counts: Counter[str] = Counter(dict(db.execute(
            select(Event.type, func.count()).where(*in_range, Event.type.in_(MAIL_COUNTERS)).group_by(Event.type)).all()))
        latency = Histogram(DELIVERY_BUCKETS)
        rows = db.execute(select(Event.occurred_at, Message.sent_at, Message.created_at)
                          .join(Message, Message.id == Event.resource_id)
                          .where(*in_range, Event.type == "message.delivered"))
        for delivered_at, sent_at, created_at in rows:
            latency.observe((), max(0.0, (delivered_at - (sent_at or created_at)).total_seconds()))
        return counts, latency

    def collect(self, store: Store, now: dt.datetime) -> tuple[Counter[str], Histogram]:
        """(event counts by type, delivery latency histogram) as of now."""
        boundary = id_floor("evt", now - dt.timedelta(seconds=SETTLE_SECONDS))
        with store.read_sessions() as db:
            with self._lock:
                if boundary > self._settled_below:
                    counts, latency = self._count(db, self._settled_below, boundary)
                    self._counts.update(counts)
                    self._latency.merge(latency.snapshot())
                    self._settled_below = boundary
                settled_below, total = self._settled_below, Counter(self._counts)
                histogram = Histogram(DELIVERY_BUCKETS)
                histogram.merge(self._latency.snapshot())
            recent, recent_latency = self._count(db, settled_below, None)
        total.update(recent)
        histogram.merge(recent_latency.snapshot())
        return total, histogram


def _queue(store: Store, now: dt.datetime) -> tuple[dict[str, int], float, float]:
    """(rows waiting by status, age of the oldest waiting row, age of the oldest deferred row)."""
    waiting = ("queued", "deferred", "delivering")
    with store.read_sessions() as db:
        by_status = dict(db.execute(select(OutboundQueue.status, func.count())
                                    .where(OutboundQueue.status.in_(waiting)).group_by(OutboundQueue.status)).all())
        oldest = db.scalar(select(func.min(OutboundQueue.created_at)).where(OutboundQueue.status.in_(waiting)))
        deferred = db.scalar(select(func.min(OutboundQueue.created_at)).where(OutboundQueue.status == "deferred"))
    age = lambda t: max(0.0, (now - t).total_seconds()) if t else 0.0  # noqa: E731
    return {s: int(by_status.get(s, 0)) for s in waiting}, age(oldest), age(deferred)


def _heartbeats(store: Store) -> list[ProcessHeartbeat]:
    with store.read_sessions() as db:
        return list(db.scalars(select(ProcessHeartbeat)))


# --- the text format -------------------------------------------------------------------------
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _histogram_lines(name: str, names: tuple[str, ...], histogram: Histogram) -> list[str]:
    lines = []
    for labels, series in sorted(histogram.snapshot().items()):
        pairs = list(zip(names, labels))
        cumulative = 0.0
        for bound, count in zip((*histogram.buckets, math.inf), series[:-1]):
            cumulative += count
            lines.append(f"{name}_bucket{_labels(pairs + [('le', _number(bound))])} {_number(cumulative)}")
        lines.append(f"{name}_sum{_labels(pairs)} {_number(series[-1])}")
        lines.append(f"{name}_count{_labels(pairs)} {_number(cumulative)}")
    return lines


def _enrichment_backlog(store: Store) -> int:
    from appliance.services.intelligence import enrich  # noqa: PLC0415 - a service read, kept off import time
    with store.session() as db:
        return enrich.backlog(db)


def render(store: Store, store_metrics: StoreMetrics, http: HttpHistogram, *, own_heartbeat: str | None = None,
           now: dt.datetime | None = None) -> str:
    """The whole /metrics document."""
    started = time.perf_counter()
    now = now or utcnow()
    counts, latency = store_metrics.collect(store, now)
    depth, oldest, oldest_deferred = _queue(store, now)
    beats = _heartbeats(store)
    lines: list[str] = []
    for type_, (name, help_text) in MAIL_COUNTERS.items():
        lines += _family(name, "counter", help_text) + [f"{name} {counts.get(type_, 0)}"]
    lines += _family("gentbox_queue_rows", "gauge", "Outbound queue rows waiting to be delivered, by status.")
    lines += [f"gentbox_queue_rows{_labels([('status', s)])} {n}" for s, n in depth.items()]
    lines += _family("gentbox_queue_oldest_age_seconds", "gauge", "Age of the oldest queue row waiting.")
    lines += [f"gentbox_queue_oldest_age_seconds {_number(round(oldest, 3))}"]
    lines += _family("gentbox_queue_oldest_deferred_age_seconds", "gauge",
                     "Age of the oldest deferred queue row (0 when none is deferred).")
    lines += [f"gentbox_queue_oldest_deferred_age_seconds {_number(round(oldest_deferred, 3))}"]
    lines += _family("gentbox_delivery_latency_seconds", "histogram",
                     "From a message being queued to its delivery to one recipient domain.")
    lines += _histogram_lines("gentbox_delivery_latency_seconds", (), latency) or [
        *(f'gentbox_delivery_latency_seconds_bucket{{le="{_number(b)}"}} 0' for b in (*DELIVERY_BUCKETS, math.inf)),
        "gentbox_delivery_latency_seconds_sum 0", "gentbox_delivery_latency_seconds_count 0"]
    # HTTP latency: this process's live histogram plus every other web process's last report.
    total_http = HttpHistogram()
    total_http.merge(http.snapshot())
    for beat in beats:
        if beat.kind == "web" and beat.id != own_heartbeat:
            total_http.merge(HttpHistogram.from_json(beat.metrics))
    lines += _family("gentbox_http_request_duration_seconds", "histogram",
                     "Web requests by method and route (URL rule), all web processes.")
    lines += _histogram_lines("gentbox_http_request_duration_seconds", ("method", "route"), total_http)
    fresh = Counter(b.kind for b in beats if (now - b.beat_at).total_seconds() <= stale_after(store.settings.heartbeat_interval))
    lines += _family("gentbox_processes", "gauge", "Processes with a fresh heartbeat, by kind.")
    lines += [f"gentbox_processes{_labels([('kind', k)])} {fresh.get(k, 0)}" for k in KINDS]
    lines += _family("gentbox_enrichment_backlog", "gauge",
                     "Received messages the worker has not yet enriched (phishing verdict, next step).")
    lines += [f"gentbox_enrichment_backlog {_enrichment_backlog(store)}"]
    lines += _family("gentbox_metrics_scrape_duration_seconds", "gauge", "How long this answer took to compute.")
    lines += [f"gentbox_metrics_scrape_duration_seconds {time.perf_counter() - started:.6f}"]
    return "\n".join(lines) + "\n"
