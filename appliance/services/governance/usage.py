"""Metering (issue 22): what a tenant and each inbox used, counted as it happens.

Every metered action calls `record` (or `record_many`) in the same transaction as the action:
one upsert into `usage_counters` per (inbox, metric, hour), never a scan. Periods and stats
series are sums of hour buckets. Gauges (storage bytes) are one running total in bucket 0.

Metrics counted today: sends (one per recipient), messages_received, mailbox_bytes, approvals,
bounces. The others are named here so that the areas that bring them (files, workflows,
broadcasts, intelligence) count through the same function: files_bytes, file_writes,
workflow_runs, broadcasts, enrichment_tokens, spend_micros.
"""
from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ValidationError
from appliance.models import Inbox, UsageCounter

SENDS, RECEIVED, MAILBOX_BYTES, APPROVALS, BOUNCES = "sends", "messages_received", "mailbox_bytes", "approvals", "bounces"
FILES_BYTES, FILE_WRITES, WORKFLOW_RUNS, BROADCASTS = "files_bytes", "file_writes", "workflow_runs", "broadcasts"
ENRICHMENT_TOKENS, SPEND_MICROS = "enrichment_tokens", "spend_micros"  # spend in millionths of the unit
GAUGES = (MAILBOX_BYTES, FILES_BYTES)
METRICS = (SENDS, RECEIVED, MAILBOX_BYTES, APPROVALS, BOUNCES, FILES_BYTES, FILE_WRITES, WORKFLOW_RUNS,
           BROADCASTS, ENRICHMENT_TOKENS, SPEND_MICROS)
GAUGE_BUCKET = 0

# One statement on SQLite (>= 3.24) and PostgreSQL alike; SQL text because it runs on every send.
_UPSERT = text(
    "INSERT INTO usage_counters (tenant_id, inbox_id, metric, hour, value) "
    "VALUES (:tenant_id, :inbox_id, :metric, :hour, :value) "
    "ON CONFLICT (tenant_id, inbox_id, metric, hour) DO UPDATE SET value = usage_counters.value + excluded.value")


def hour_of(now: dt.datetime) -> int:
    """The hour bucket (unix seconds of the hour's start) that now falls in."""
    stamp = int(now.timestamp())
    return stamp - stamp % 3600


def _row(tenant_id: str, inbox_id: str | None, metric: str, amount: int, now: dt.datetime) -> dict:
    if metric not in METRICS:  # a programming error: a typo would meter nothing, silently
        raise ValueError(f"unknown usage metric {metric!r}")
    return {"tenant_id": tenant_id, "inbox_id": inbox_id or "", "metric": metric,
            "hour": GAUGE_BUCKET if metric in GAUGES else hour_of(now), "value": int(amount)}


def record(db: Session, tenant_id: str, metric: str, amount: int = 1, *, inbox_id: str | None = None,
           now: dt.datetime | None = None) -> None:
    """Count amount of metric for the tenant (and inbox) in the caller's transaction."""
    if amount:
        db.execute(_UPSERT, _row(tenant_id, inbox_id, metric, amount, now or utcnow()))


def record_many(db: Session, entries: Iterable[tuple[str, str | None, str, int]], *,
                now: dt.datetime | None = None) -> None:
    """Several (tenant_id, inbox_id, metric, amount) at once: one executemany, rows merged first and
    written in key order (two batches touching the same rows then lock them in the same order)."""
    now = now or utcnow()
    merged: Counter[tuple[str, str, str, int]] = Counter()
    for tenant_id, inbox_id, metric, amount in entries:
        row = _row(tenant_id, inbox_id, metric, amount, now)
        merged[(row["tenant_id"], row["inbox_id"], row["metric"], row["hour"])] += row["value"]
    rows = [{"tenant_id": t, "inbox_id": i, "metric": m, "hour": h, "value": v}
            for (t, i, m, h), v in sorted(merged.items()) if v]
    if rows:
        db.connection().execute(_UPSERT, rows)


# --- reading --------------------------------------------------------------------------------
def month_bounds(period: str | None, now: dt.datetime | None = None) -> tuple[str, int, int]:
    """A `YYYY-MM` period (default: this month, UTC) and its start and end in unix seconds."""
    now = now or utcnow()
    if period is None:
        year, month = now.year, now.month
    else:
        try:
            year, month = (int(part) for part in period.split("-"))
            dt.date(year, month, 1)
        except ValueError:
            raise ValidationError("period must be YYYY-MM, e.g. 2026-12", field="period") from None
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=calendar.monthrange(year, month)[1])
    return f"{year:04d}-{month:02d}", int(start.timestamp()), int(end.timestamp())


def totals(db: Session, tenant_id: str, start: int, end: int, inbox_id: str | None = None) -> dict[str, dict[str, int]]:
    """Per inbox ('' for tenant-level rows): each metric's sum over [start, end), gauges as they are now."""
    where = [UsageCounter.tenant_id == tenant_id]
    if inbox_id is not None:
        where.append(UsageCounter.inbox_id == inbox_id)
    period = ((UsageCounter.hour >= start) & (UsageCounter.hour < end)) | (UsageCounter.hour == GAUGE_BUCKET)
    rows = db.execute(select(UsageCounter.inbox_id, UsageCounter.metric, func.sum(UsageCounter.value))
                      .where(*where, period).group_by(UsageCounter.inbox_id, UsageCounter.metric))
    out: dict[str, dict[str, int]] = {}
    for inbox, metric, value in rows:
        out.setdefault(inbox, {})[metric] = int(value or 0)
    return out


def gauge(db: Session, tenant_id: str, metric: str, inbox_id: str | None = None) -> int:
    """A gauge now: one inbox's, or the tenant's (the sum of its inboxes' rows)."""
    query = select(func.coalesce(func.sum(UsageCounter.value), 0)).where(
        UsageCounter.tenant_id == tenant_id, UsageCounter.metric == metric, UsageCounter.hour == GAUGE_BUCKET)
    if inbox_id is not None:
        query = query.where(UsageCounter.inbox_id == inbox_id)
    return int(db.scalar(query) or 0)


# Built once (Core): read for every received batch that a mailbox cap concerns.
_GAUGES = select(UsageCounter.__table__.c.tenant_id, UsageCounter.__table__.c.inbox_id,
                 UsageCounter.__table__.c.value).where(
    UsageCounter.__table__.c.tenant_id.in_(bindparam("tenants", expanding=True)),
    UsageCounter.__table__.c.metric == bindparam("metric"), UsageCounter.__table__.c.hour == GAUGE_BUCKET)


def gauges(db: Session | Connection, tenant_ids: set[str], metric: str) -> dict[str, dict[str, int]]:
    """Every inbox's gauge of these tenants, in one read: {tenant_id: {inbox_id: value}}."""
    out: dict[str, dict[str, int]] = {}
    conn = db.connection() if isinstance(db, Session) else db
    rows = conn.execute(_GAUGES, {"tenants": sorted(tenant_ids), "metric": metric})
    for tenant_id, inbox_id, value in rows:
        out.setdefault(tenant_id, {})[inbox_id] = int(value)
    return out


@dataclass(frozen=True)
class Prices:
    """The operator's unit prices (settings): what spend is made of."""

    per_1000_sends: float
    per_gb_month: float
    per_million_tokens: float


def prices(settings: Settings) -> Prices:
    return Prices(settings.price_per_1000_smarthost_sends, settings.price_per_gb_month,
                  settings.price_per_million_tokens)


def spend(settings: Settings, figures: dict[str, int]) -> dict[str, float]:
    """Spend of a period's figures at the operator's prices: sends (through a smarthost only),
    storage held, model tokens, plus spend metered directly (spend_micros)."""
    p = prices(settings)
    sends = figures.get(SENDS, 0) * p.per_1000_sends / 1000 if settings.relay_host else 0.0
    storage = (figures.get(MAILBOX_BYTES, 0) + figures.get(FILES_BYTES, 0)) / 1e9 * p.per_gb_month
    enrichment = figures.get(ENRICHMENT_TOKENS, 0) / 1e6 * p.per_million_tokens + figures.get(SPEND_MICROS, 0) / 1e6
    return {"enrichment": round(enrichment, 6), "total": round(sends + storage + enrichment, 6)}


def month_spend(db: Session, settings: Settings, tenant_id: str) -> float:
    """The tenant's spend this month (UTC) at the operator's prices: one grouped sum, no addresses."""
    _name, start, end = month_bounds(None)
    whole: Counter[str] = Counter()
    for metrics in totals(db, tenant_id, start, end).values():
        whole.update(metrics)
    return spend(settings, dict(whole))["total"]


def _figures(per_metric: dict[str, int], settings: Settings) -> dict:
    money = spend(settings, per_metric)
    return {"mailbox_storage_bytes": per_metric.get(MAILBOX_BYTES, 0),
            "files_storage_bytes": per_metric.get(FILES_BYTES, 0), "sends": per_metric.get(SENDS, 0),
            "messages_received": per_metric.get(RECEIVED, 0), "workflow_runs": per_metric.get(WORKFLOW_RUNS, 0),
            "approvals": per_metric.get(APPROVALS, 0), "broadcasts": per_metric.get(BROADCASTS, 0),
            "file_writes": per_metric.get(FILE_WRITES, 0), "enrichment_tokens": per_metric.get(ENRICHMENT_TOKENS, 0),
            "enrichment_spend": money["enrichment"], "spend": money["total"]}


def usage_report(db: Session, settings: Settings, tenant_id: str, period: str | None, *,
                 inbox_id: str | None = None) -> dict:
    """GET /v1/billing/usage/: the period's figures for the tenant (or one inbox) and per inbox."""
    name, start, end = month_bounds(period)
    per_inbox = totals(db, tenant_id, start, end, inbox_id)
    whole: Counter[str] = Counter()
    for metrics in per_inbox.values():
        whole.update(metrics)
    addresses = dict(db.execute(select(Inbox.id, Inbox.address).where(
        Inbox.tenant_id == tenant_id, Inbox.id.in_([i for i in per_inbox if i]))).all()) if per_inbox else {}
    inboxes = [{"inbox_id": i, "address": addresses.get(i, ""), **_figures(m, settings)}
               for i, m in sorted(per_inbox.items()) if i]
    return {"period": name, **_figures(dict(whole), settings), "inboxes": inboxes}


SERIES = {"sends": SENDS, "receives": RECEIVED, "bounces": BOUNCES, "workflow_runs": WORKFLOW_RUNS,
          "approvals": APPROVALS, "broadcasts": BROADCASTS, "file_writes": FILE_WRITES}
MAX_POINTS = 1000


def stats_window(frm: dt.datetime | None, to: dt.datetime | None, interval: str) -> tuple[dt.datetime, dt.datetime]:
    """GET /v1/stats/'s window: `to` defaults to now, `from` to 24 h (hourly) or 30 days (daily)
    before it; both need a zone; a window past the calendar's ends → 400."""
    for name, value in (("from", frm), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"{name}: times need a zone, e.g. 2026-12-01T00:00:00Z", field=name)
    end = to or utcnow()
    try:
        start = frm or end - (dt.timedelta(hours=24) if interval == "hour" else dt.timedelta(days=30))
    except OverflowError:
        raise ValidationError("to: too early for a window before it", field="to",
                              fix="Send a `to` after the year 1, or a `from` as well.") from None
    return start, end


def stats(db: Session, tenant_id: str, *, start: dt.datetime, end: dt.datetime, interval: str,
          inbox_id: str | None = None) -> dict:
    """GET /v1/stats/: each series' sums per hour or day over [start, end), zeros included."""
    step = 3600 if interval == "hour" else 86400
    first, last = int(start.timestamp()) // step * step, int(end.timestamp())
    if last <= first:
        raise ValidationError("to must be after from", field="to")
    if (last - first) // step > MAX_POINTS:
        raise ValidationError(f"at most {MAX_POINTS} points per series; widen the interval or narrow the range",
                              field="interval", fix="Use interval=day, or a shorter range")
    where = [UsageCounter.tenant_id == tenant_id, UsageCounter.metric.in_(list(SERIES.values())),
             UsageCounter.hour >= first, UsageCounter.hour < last]
    if inbox_id is not None:
        where.append(UsageCounter.inbox_id == inbox_id)
    points = list(range(first, last, step))
    series = {name: [0] * len(points) for name in SERIES}
    by_metric = {metric: name for name, metric in SERIES.items()}
    for metric, hour, value in db.execute(select(UsageCounter.metric, UsageCounter.hour, UsageCounter.value)
                                          .where(*where)):
        series[by_metric[metric]][(hour - first) // step] += int(value)
    times = [dt.datetime.fromtimestamp(p, dt.timezone.utc).isoformat().replace("+00:00", "Z") for p in points]
    return {"interval": interval, "from": times[0], "to": dt.datetime.fromtimestamp(last, dt.timezone.utc)
            .isoformat().replace("+00:00", "Z"), "times": times, "series": series}


def tenant_table(db: Session, settings: Settings, period: str | None = None) -> list[dict]:
    """The operator's view: every tenant's figures for the period (one grouped read)."""
    name, start, end = month_bounds(period)
    period_clause = ((UsageCounter.hour >= start) & (UsageCounter.hour < end)) | (UsageCounter.hour == GAUGE_BUCKET)
    rows = db.execute(select(UsageCounter.tenant_id, UsageCounter.metric, func.sum(UsageCounter.value))
                      .where(period_clause).group_by(UsageCounter.tenant_id, UsageCounter.metric))
    out: dict[str, dict[str, int]] = {}
    for tenant, metric, value in rows:
        out.setdefault(tenant, {})[metric] = int(value or 0)
    return [{"tenant_id": t, "period": name, **_figures(m, settings)} for t, m in sorted(out.items())]
