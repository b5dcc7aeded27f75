"""Caps (issue 22): layered send caps, mailbox and files storage caps, a spend cap; thresholds.

Send caps are layered (tenant, inbox, token: every level must allow) and counted in the store:
one multi-row upsert, a row per configured level and window, into `rate_counters` (key
`cap:sends:<level>:<id>:<window>`, window start as the row's window), in the sending transaction,
before anything is queued. The upsert returns each count after this send; over the limit the whole transaction rolls
back (the count with it) and the sender hears 429 send_cap_reached. On PostgreSQL a concurrent
send waits on the counter row's lock until this one commits or rolls back, on SQLite every writer
holds the one write lock: two sends never both pass the last unit. Windows are fixed (the UTC
hour, day and month), so Retry-After is the time until the window ends.

Mailbox caps in `enforce` mode refuse a received message that would take the mailbox past its
limit (the SMTP edge answers 452 4.2.2, temporary); nothing stored is ever deleted. On PostgreSQL
a received batch locks its caps before reading the gauges, so batches of several processes or
nodes take turns at a cap (SQLite's writers take turns anyway).

Caps are read in every transaction that they bind (no per-process copy): a cap made, changed or
deleted binds the next send or message in every process.

Thresholds: `cap.reached` is emitted, and the owner mailed, once per cap, threshold and period
(a marker row in rate_counters, inserted only once, makes it so).
"""
from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, select, text
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ForbiddenError, NotFoundError, RateLimitedError, ValidationError
from appliance.ids import new_id
from appliance.models import AgentToken, Inbox, RateCounter, UsageCap, UsageCounter
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import usage
from appliance.services.identity.auth import Principal
from appliance.services.mail import notices

LEVELS = ("tenant", "inbox", "token")
WINDOWS = (("per_hour", "hour"), ("per_day", "day"), ("per_month", "month"))
DEFAULT_THRESHOLDS = [80, 95, 100]
MODES = ("enforce", "allow_and_bill")
GB = 1_000_000_000


class MailboxFull(Exception):
    """A received message would take a mailbox past its enforced cap: refused for now (452 4.2.2)."""

    def __init__(self, inbox_id: str, used: int, limit: int) -> None:
        super().__init__(f"mailbox of {inbox_id} holds {used} of {limit} bytes")
        self.inbox_id, self.used, self.limit = inbox_id, used, limit


@dataclass
class Cap:
    """A cap as enforced: a stored row, or the operator's box-wide default for a tenant."""

    id: str
    tenant_id: str
    kind: str
    level: str
    subject_id: str
    per_hour: int | None = None
    per_day: int | None = None
    per_month: int | None = None
    limit_bytes: int | None = None
    monthly_limit: float | None = None
    mode: str = "enforce"
    alert_thresholds: list = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    default: bool = False  # the operator's default, not the tenant's own

    @classmethod
    def of(cls, row: UsageCap) -> Cap:
        return cls(id=row.id, tenant_id=row.tenant_id, kind=row.kind, level=row.level, subject_id=row.subject_id,
                   per_hour=row.per_hour, per_day=row.per_day, per_month=row.per_month,
                   limit_bytes=row.limit_bytes, monthly_limit=row.monthly_limit, mode=row.mode,
                   alert_thresholds=list(row.alert_thresholds or []))


def window(period: str, now: dt.datetime) -> tuple[int, int]:
    """The fixed UTC window (hour, day or month) that now falls in: start and end, unix seconds."""
    now = now.astimezone(dt.timezone.utc)
    if period == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(hours=1)
    elif period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=calendar.monthrange(start.year, start.month)[1])
    return int(start.timestamp()), int(end.timestamp())


# Counted in the shared counter table, like request rate limits: every (level, window) of a send
# in one multi-row upsert that returns the counts after it (one statement per send, not nine).
# Rows go in key order, so two senders lock their shared counter rows in the same order.
_HITS: dict[int, Any] = {}
_MARK = text('INSERT INTO rate_counters (key, "window", count, expires) VALUES (:key, :window, 1, :expires) '
             'ON CONFLICT (key, "window") DO NOTHING')


def _hits(rows: int) -> Any:
    """The upsert of `rows` counters (built once per size: at most three levels times three windows)."""
    statement = _HITS.get(rows)
    if statement is None:
        values = ", ".join(f"(:k{i}, :w{i}, :n, :e{i})" for i in range(rows))
        statement = _HITS[rows] = text(
            f'INSERT INTO rate_counters (key, "window", count, expires) VALUES {values} '
            'ON CONFLICT (key, "window") DO UPDATE SET count = rate_counters.count + excluded.count '
            'RETURNING key, count')
    return statement


def _key(cap: Cap, period: str) -> str:
    return f"cap:sends:{cap.level}:{cap.subject_id}:{period}"


def _defaults(settings: Settings, tenant_id: str, kind: str) -> Cap | None:
    """The operator's box-wide default cap of this kind for a tenant, if one is configured."""
    if kind == "sends" and (settings.default_tenant_sends_per_hour or settings.default_tenant_sends_per_day
                            or settings.default_tenant_sends_per_month):
        return Cap(id=f"default:{tenant_id}:sends", tenant_id=tenant_id, kind="sends", level="tenant",
                   subject_id=tenant_id, per_hour=settings.default_tenant_sends_per_hour or None,
                   per_day=settings.default_tenant_sends_per_day or None,
                   per_month=settings.default_tenant_sends_per_month or None, default=True)
    if kind == "mailbox" and settings.default_tenant_mailbox_bytes:
        return Cap(id=f"default:{tenant_id}:mailbox", tenant_id=tenant_id, kind="mailbox", level="tenant",
                   subject_id=tenant_id, limit_bytes=settings.default_tenant_mailbox_bytes, default=True)
    return None


# Built once (Core, expanding IN lists): they run on every send, every received batch and RCPT.
_C = UsageCap.__table__.c
_G = UsageCounter.__table__.c
_CAPS = select(_C.id, _C.tenant_id, _C.kind, _C.level, _C.subject_id, _C.per_hour, _C.per_day, _C.per_month,
               _C.limit_bytes, _C.monthly_limit, _C.mode, _C.alert_thresholds).where(_C.tenant_id.in_(bindparam("tenants", expanding=True)), _C.kind == bindparam("kind"))
_CAPS_OF = _CAPS.where(_C.subject_id.in_(bindparam("subjects", expanding=True)))
# PostgreSQL: the caps a received batch must respect, locked (in id order) until it commits, so
# that a concurrent batch reads the gauges only once this one's bytes are in them.
_CAPS_LOCKED = _CAPS_OF.order_by(_C.id).with_for_update()
_CAPS_LOCKED_ALL = _CAPS.order_by(_C.id).with_for_update()
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# The caps with what they hold now, in one statement: an inbox cap's one gauge row, a tenant
# cap's sum of its inboxes' rows (SQLite's writers take turns, so this read is exact for one).
_USED = case((_C.level == "tenant", select(func.coalesce(func.sum(_G.value), 0)).where(
    _G.tenant_id == _C.tenant_id, _G.metric == bindparam("metric"), _G.hour == usage.GAUGE_BUCKET)
    .scalar_subquery()), else_=func.coalesce(select(_G.value).where(
        _G.tenant_id == _C.tenant_id, _G.inbox_id == _C.subject_id, _G.metric == bindparam("metric"),
        _G.hour == usage.GAUGE_BUCKET).scalar_subquery(), 0))
_CAPS_USED = _CAPS.add_columns(_USED.label("used"))
_CAPS_USED_OF = _CAPS_USED.where(_C.subject_id.in_(bindparam("subjects", expanding=True)))


def _conn(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _with_defaults(settings: Settings | None, found: list[Cap], tenant_ids: set[str], kind: str) -> list[Cap]:
    own = {c.tenant_id for c in found if c.level == "tenant"}
    if settings is not None:
        found += [d for t in sorted(tenant_ids - own) if (d := _defaults(settings, t, kind)) is not None]
    return sorted(found, key=lambda c: (LEVELS.index(c.level), c.subject_id))


def caps_of(db: Session | Connection, settings: Settings | None, tenant_ids: set[str], kind: str,
            subjects: set[str] | None = None) -> list[Cap]:
    """The caps of kind for these tenants (one indexed read), the operator's defaults filling in
    for tenants without a tenant-level cap of their own (none without settings)."""
    params: dict[str, Any] = {"tenants": sorted(tenant_ids), "kind": kind}
    if subjects is not None:
        params["subjects"] = sorted(subjects)
    found = [Cap.of(row) for row in _conn(db).execute(_CAPS if subjects is None else _CAPS_OF, params)]
    return _with_defaults(settings, found, tenant_ids, kind)


# --- sends ----------------------------------------------------------------------------------
def charge_sends(db: Session, settings: Settings, *, tenant_id: str, inbox_id: str, token_id: str | None,
                 count: int, now: dt.datetime | None = None) -> None:
    """Count count sends against every cap of the sender's levels, in the caller's transaction;
    RateLimitedError send_cap_reached (nothing counted, once the caller rolls back) when a level
    would go over. Called by the one send path before anything is stored or queued."""
    now = now or utcnow()
    subjects = {tenant_id, inbox_id} | ({token_id} if token_id else set())
    caps = caps_of(db, settings, {tenant_id}, "sends", subjects)
    windows = {period: window(period, now) for _field, period in WINDOWS}
    limited = [(_key(cap, period), cap, period, getattr(cap, limit_field))
               for cap in caps for limit_field, period in WINDOWS if getattr(cap, limit_field) is not None]
    if not limited:
        return
    params: dict[str, Any] = {"n": count}
    for i, (key, _cap, period, _limit) in enumerate(sorted(limited, key=lambda hit: hit[0])):
        params.update({f"k{i}": key, f"w{i}": windows[period][0], f"e{i}": windows[period][1]})
    used_now = dict(_conn(db).execute(_hits(len(limited)), params).all())
    over = []
    for key, cap, period, limit in limited:
        used = used_now[key]
        if used > limit:
            over.append((cap, period, limit, used - count, windows[period][1]))
        else:
            _thresholds(db, settings, cap, period, windows[period], used - count, used, limit, "sends")
    if over:
        _refuse(over, now)


def _refuse(over: list, now: dt.datetime) -> None:
    """429 send_cap_reached: Retry-After when every window that refused has ended."""
    stamp = now.timestamp()
    retry = max(math.ceil(end - stamp) for *_rest, end in over)
    cap, period, limit, used, _end = over[0]
    headers = {"X-Gentbox-Cap-Limit": str(limit), "X-Gentbox-Cap-Remaining": str(max(0, limit - used)),
               "X-Gentbox-Cap-Level": cap.level, "X-Gentbox-Cap-Window": period}
    raise RateLimitedError(retry, f"The {cap.level} send cap of {limit} per {period} is reached.",
                           code="send_cap_reached", headers=headers,
                           fix=f"Retry after {max(1, retry)} seconds, or ask an owner to raise the cap.")


def send_use(db: Session, cap: Cap, now: dt.datetime | None = None) -> dict[str, int]:
    """How much of each window of a send cap is used now."""
    now = now or utcnow()
    out = {}
    for limit_field, period in WINDOWS:
        if getattr(cap, limit_field) is not None:
            value = db.scalar(select(RateCounter.count).where(RateCounter.key == _key(cap, period),
                                                              RateCounter.window == window(period, now)[0]))
            out[period] = int(value or 0)
    return out


# --- mailbox --------------------------------------------------------------------------------
class MailboxQuota:
    """Mailbox caps of the tenants in one batch of received mail, with running totals."""

    def __init__(self, db: Session, settings: Settings | None, caps: list[Cap],
                 used: dict[str, int] | None = None) -> None:
        self.db, self.settings, self.caps = db, settings, caps
        self.used: dict[str, int] = used or {}  # cap id -> bytes, loaded with the caps or on first use, kept running

    def admit(self, targets: list[tuple[str, str]], size: int, now: dt.datetime) -> None:
        """Count a message of size stored once per (tenant_id, inbox_id) target; MailboxFull
        before counting anything when an enforced cap would be passed."""
        planned: dict[str, int] = {}
        for tenant_id, inbox_id in targets:
            for cap in self._caps_for(tenant_id, inbox_id):
                planned[cap.id] = planned.get(cap.id, 0) + size
        moves = []
        for cap in self.caps:
            if cap.id not in planned:
                continue
            before = self._used(cap)
            after = before + planned[cap.id]
            if cap.mode == "enforce" and after > cap.limit_bytes:
                raise MailboxFull(targets[0][1], before, cap.limit_bytes)
            moves.append((cap, before, after))
        for cap, before, after in moves:
            self.used[cap.id] = after
            _thresholds(self.db, self.settings, cap, "month", window("month", now), before, after,
                        cap.limit_bytes, "mailbox")

    def _caps_for(self, tenant_id: str, inbox_id: str) -> list[Cap]:
        return [c for c in self.caps if c.tenant_id == tenant_id and c.subject_id in (tenant_id, inbox_id)]

    def _used(self, cap: Cap) -> int:
        if cap.id not in self.used:  # one read for every cap of the batch: the capped tenants' inbox gauges
            self.used.update(_gauged(self.db, self.caps))
        return self.used[cap.id]


def _gauged(db: Session | Connection, caps: list[Cap]) -> dict[str, int]:
    """What each mailbox cap holds now: one read of the capped tenants' inbox gauges."""
    gauges = usage.gauges(db, {c.tenant_id for c in caps}, usage.MAILBOX_BYTES)
    return {cap.id: sum(gauges.get(cap.tenant_id, {}).values()) if cap.level == "tenant"
            else gauges.get(cap.tenant_id, {}).get(cap.subject_id, 0) for cap in caps}


class MailboxRoom:
    """The mailbox caps of one tenant with what each holds, read once (one statement) for the
    RCPT commands of one SMTP transaction; DATA checks the real size exactly again."""

    def __init__(self, caps: list[Cap], used: dict[str, int]) -> None:
        self.caps, self.used = caps, used

    def full(self, inbox_id: str, size: int = 0) -> bool:
        """The inbox (or its tenant) is at an enforced mailbox cap already, or would pass it with a
        message of the size the sender declared (SIZE=)."""
        for cap in self.caps:
            if cap.level == "tenant" or cap.subject_id == inbox_id:
                if self.used[cap.id] + max(size, 1) > cap.limit_bytes:  # as admit: a full mailbox takes no byte more
                    return True
        return False


def _caps_with_use(db: Session | Connection, settings: Settings | None, tenant_ids: set[str],
                   subjects: set[str] | None) -> tuple[list[Cap], dict[str, int]]:
    """The mailbox caps of these tenants (of these subjects only, if given) with what each holds,
    in one read (a second one only for the operator's default caps: no row to join gauges to)."""
    conn = _conn(db)
    params: dict[str, Any] = {"tenants": sorted(tenant_ids), "kind": "mailbox", "metric": usage.MAILBOX_BYTES}
    if subjects is not None:
        params["subjects"] = sorted(subjects)
    rows = conn.execute(_CAPS_USED if subjects is None else _CAPS_USED_OF, params).all()
    used = {row.id: int(row.used) for row in rows}
    caps = [c for c in _with_defaults(settings, [Cap.of(row) for row in rows], tenant_ids, "mailbox")
            if c.limit_bytes is not None]
    if any(c.default for c in caps):
        used.update(_gauged(conn, [c for c in caps if c.default]))
    return caps, used


def mailbox_room(db: Session | Connection, settings: Settings | None, tenant_id: str) -> MailboxRoom:
    """For the RCPT commands of one SMTP transaction: the tenant's enforced mailbox caps and what
    they hold, in one read."""
    caps, used = _caps_with_use(db, settings, {tenant_id}, None)
    return MailboxRoom([c for c in caps if c.mode == "enforce"], used)


def mailbox_full(db: Session | Connection, settings: Settings, tenant_id: str, inbox_id: str, size: int = 0) -> bool:
    """For RCPT TO: the inbox (or its tenant) is at an enforced mailbox cap already, or would pass
    it with a message of the size the sender declared (SIZE=); the real size is checked at DATA."""
    caps, used = _caps_with_use(db, settings, {tenant_id}, {tenant_id, inbox_id})
    return MailboxRoom([c for c in caps if c.mode == "enforce"], used).full(inbox_id, size)


def mailbox_quota(db: Session, settings: Settings | None, tenant_ids: set[str],
                  inbox_ids: set[str] | None = None) -> MailboxQuota | None:
    """The quota keeper for a batch of received mail to inbox_ids (None: any inbox of these
    tenants), or None when no mailbox cap concerns it. SQLite: one read (its writers take turns).
    PostgreSQL: the caps are locked until the batch commits and the gauges read once locked, so
    batches of other processes or nodes wait and then see these bytes: none passes a cap."""
    if not tenant_ids:
        return None
    subjects = None if inbox_ids is None else set(tenant_ids) | set(inbox_ids)
    if db.get_bind().dialect.name != "postgresql":
        caps, used = _caps_with_use(db, settings, tenant_ids, subjects)
        return MailboxQuota(db, settings, caps, used) if caps else None
    params: dict[str, Any] = {"tenants": sorted(tenant_ids), "kind": "mailbox"}
    if subjects is not None:
        params["subjects"] = sorted(subjects)
    rows = db.connection().execute(_CAPS_LOCKED_ALL if subjects is None else _CAPS_LOCKED, params)
    caps = [c for c in _with_defaults(settings, [Cap.of(row) for row in rows], tenant_ids, "mailbox")
            if c.limit_bytes is not None]
    for tenant_id in sorted({c.tenant_id for c in caps if c.default}):  # no row to lock: the tenant's key
        db.connection().execute(_ADVISORY_LOCK, {"key": f"gentbox:mailbox-cap:{tenant_id}"})
    return MailboxQuota(db, settings, caps) if caps else None


def check_files(db: Session, settings: Settings, *, tenant_id: str, inbox_id: str | None, size: int) -> None:
    """For the files area: 403 cap_reached when a write of size bytes would pass an enforced files cap."""
    for cap in caps_of(db, settings, {tenant_id}, "files", {tenant_id, inbox_id or tenant_id}):
        used = usage.gauge(db, tenant_id, usage.FILES_BYTES, None if cap.level == "tenant" else cap.subject_id)
        if cap.mode == "enforce" and cap.limit_bytes is not None and used + size > cap.limit_bytes:
            raise ForbiddenError(f"The {cap.level} files cap of {cap.limit_bytes} bytes is reached.",
                                 code="cap_reached", fix="Delete files or ask an owner to raise the cap.")


def check_spend(db: Session, settings: Settings, *, tenant_id: str, cost: float) -> None:
    """403 cap_reached when `cost` more this month would pass the tenant's enforced spend cap (the
    operator's unit prices times usage: usage.spend). Called by what costs money before it is done:
    sends through a priced smarthost today, model calls with the intelligence issue."""
    if cost <= 0:
        return
    for cap in caps_of(db, settings, {tenant_id}, "spend", {tenant_id}):
        if cap.mode != "enforce" or cap.monthly_limit is None:
            continue
        spent = usage.month_spend(db, settings, tenant_id)
        if spent + cost > cap.monthly_limit + 1e-9:
            raise ForbiddenError(f"The tenant's spend cap of {cap.monthly_limit:g} a month is reached "
                                 f"({spent:g} spent, this would add {cost:g}).", code="cap_reached",
                                 fix="Ask an owner or admin to raise the spend cap (PUT /v1/billing/caps/spend/), "
                                     "or wait for next month.")


def smarthost_cost(settings: Settings, recipients: int) -> float:
    """What sending to `recipients` costs at the operator's smarthost price (0 without a smarthost)."""
    return recipients * settings.price_per_1000_smarthost_sends / 1000 if settings.relay_host else 0.0


# --- thresholds -----------------------------------------------------------------------------
def _thresholds(db: Session, settings: Settings | None, cap: Cap, period: str, bounds: tuple[int, int],
                before: int, after: int, limit: int | float, unit: str) -> None:
    """cap.reached for each threshold this change crossed, once per cap, threshold and window."""
    if not limit:
        return
    for threshold in sorted(cap.alert_thresholds or []):
        mark = threshold * limit / 100
        if not before < mark <= after:
            continue
        key = f"capnote:{cap.id}:{period}:{threshold}"
        if db.execute(_MARK, {"key": key[:200], "window": bounds[0], "expires": bounds[1]}).rowcount != 1:
            continue  # announced already in this window (by this or another process)
        payload = {"cap": cap.kind, "cap_id": None if cap.default else cap.id, "level": cap.level,
                   "id": cap.subject_id, "window": period, "threshold": threshold, "used": after,
                   "limit": limit, "unit": unit}
        events.emit(db, "cap.reached", tenant_id=cap.tenant_id,
                    inbox_id=cap.subject_id if cap.level == "inbox" else None, resource_id=None,
                    actor=events.context_actor() or "system", payload=payload)
        if settings is not None:
            notices.cap_reached(db, settings, cap.tenant_id, payload)


# --- managing caps (owner/admin sessions) ---------------------------------------------------
def _require_owner_session(principal: Principal) -> None:
    if principal.kind != "user":
        raise ForbiddenError("Caps are changed by an owner or admin signed in, not by a token.",
                             code="session_required", fix="Use an owner's or admin's session token.")
    if not principal.is_manager:
        raise ForbiddenError("Only the tenant's owner or an admin may change caps.")


def require_reader(principal: Principal) -> None:
    """billing:read / stats:read for sessions: owners and admins (agent tokens: their scope)."""
    if principal.kind == "user" and not principal.is_manager:
        raise ForbiddenError("Only the tenant's owner or an admin sees the tenant's usage.")


def _subject(db: Session, principal: Principal, level: str, subject_id: str | None) -> str:
    if level == "tenant":
        if subject_id not in (None, principal.tenant_id):
            raise NotFoundError("No such tenant.", field="id")
        return principal.tenant_id
    if level == "inbox":
        return tenancy.get_owned(db, Inbox, subject_id, principal.tenant_id, where=(Inbox.status != "deleted",),
                                 message="No such inbox.", field="id").id
    return tenancy.get_owned(db, AgentToken, subject_id, principal.tenant_id, where=(AgentToken.status != "revoked",),
                             message="No such token.", field="id").id


def _remove(db: Session, tenant_id: str, kind: str, subject_id: str) -> None:
    db.execute(delete(UsageCap).where(UsageCap.tenant_id == tenant_id, UsageCap.kind == kind,
                                      UsageCap.subject_id == subject_id))


def _row(db: Session, tenant_id: str, kind: str, level: str, subject_id: str, now: dt.datetime) -> UsageCap:
    row = db.scalar(select(UsageCap).where(UsageCap.tenant_id == tenant_id, UsageCap.kind == kind,
                                           UsageCap.subject_id == subject_id).with_for_update())
    if row is None:
        row = UsageCap(id=new_id("cap"), tenant_id=tenant_id, kind=kind, level=level, subject_id=subject_id,
                       mode="enforce", alert_thresholds=list(DEFAULT_THRESHOLDS), created_at=now)
        db.add(row)
    row.updated_at = now
    return row


def _check_thresholds(values: list[int] | None) -> list[int]:
    if values is None:
        return list(DEFAULT_THRESHOLDS)
    if any(not 1 <= v <= 100 for v in values) or len(values) > 10:
        raise ValidationError("alert_thresholds are up to 10 percentages from 1 to 100", field="alert_thresholds")
    return sorted(set(values))


MODES = ("enforce", "allow_and_bill")
_SEND_LIMITS = {"per_hour": 10_000_000, "per_day": 100_000_000, "per_month": 1_000_000_000}


def _check_number(name: str, value: float | None, maximum: float) -> None:
    """A limit every edge sends through here: finite, 0 or more, at most `maximum` (400 naming it)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= maximum:
        raise ValidationError(f"{name} must be a number from 0 to {maximum:g}", field=name)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValidationError(f"mode must be one of {', '.join(MODES)}", field="mode")


def set_send_cap(db: Session, principal: Principal, *, level: str, subject_id: str | None,
                 per_hour: int | None, per_day: int | None, per_month: int | None,
                 alert_thresholds: list[int] | None = None) -> dict | None:
    """PUT /v1/billing/caps/sends/: set (or, all limits null, remove) the send cap of one level."""
    _require_owner_session(principal)
    for name, value in (("per_hour", per_hour), ("per_day", per_day), ("per_month", per_month)):
        _check_number(name, value, _SEND_LIMITS[name])
        if value is not None and not isinstance(value, int):
            raise ValidationError(f"{name} must be a whole number", field=name)
    subject = _subject(db, principal, level, subject_id)
    if per_hour is None and per_day is None and per_month is None:
        _remove(db, principal.tenant_id, "sends", subject)
        return None
    row = _row(db, principal.tenant_id, "sends", level, subject, utcnow())
    row.per_hour, row.per_day, row.per_month = per_hour, per_day, per_month
    row.alert_thresholds = _check_thresholds(alert_thresholds)
    db.flush()
    return cap_to_dict(db, None, Cap.of(row))


def set_storage_cap(db: Session, principal: Principal, *, kind: str, inbox_id: str | None, limit_gb: float | None,
                    mode: str, alert_thresholds: list[int] | None) -> dict | None:
    """PUT /v1/billing/caps/mailbox/ and /files/: a tenant's (no inbox_id) or an inbox's storage cap."""
    _require_owner_session(principal)
    _check_number("limit_gb", limit_gb, 1_000_000)
    _check_mode(mode)
    level = "inbox" if inbox_id else "tenant"
    subject = _subject(db, principal, level, inbox_id)
    if limit_gb is None:
        _remove(db, principal.tenant_id, kind, subject)
        return None
    row = _row(db, principal.tenant_id, kind, level, subject, utcnow())
    row.limit_bytes, row.mode = int(round(limit_gb * GB)), mode
    row.alert_thresholds = _check_thresholds(alert_thresholds)
    db.flush()
    return cap_to_dict(db, None, Cap.of(row))


def set_spend_cap(db: Session, settings: Settings, principal: Principal, *, monthly_limit: float | None,
                  mode: str, alert_thresholds: list[int] | None) -> dict | None:
    """PUT /v1/billing/caps/spend/: the tenant's monthly spend cap (null removes it)."""
    _require_owner_session(principal)
    _check_number("monthly_limit", monthly_limit, 1e12)
    _check_mode(mode)
    if monthly_limit is None:
        _remove(db, principal.tenant_id, "spend", principal.tenant_id)
        return None
    row = _row(db, principal.tenant_id, "spend", "tenant", principal.tenant_id, utcnow())
    row.monthly_limit, row.mode = monthly_limit, mode
    row.alert_thresholds = _check_thresholds(alert_thresholds)
    db.flush()
    return cap_to_dict(db, settings, Cap.of(row))


def list_caps(db: Session, settings: Settings, principal: Principal) -> list[dict]:
    """GET /v1/billing/caps/: every cap of the tenant with its current use (an agent token: the
    caps that bind it, its tenant's, its inbox's and its own)."""
    require_reader(principal)
    caps = []
    for kind in ("sends", "mailbox", "files", "spend"):
        subjects = None
        if principal.own_inbox_id is not None:
            subjects = {principal.tenant_id, principal.own_inbox_id} | ({principal.token.id} if principal.is_agent else set())
        caps += caps_of(db, settings, {principal.tenant_id}, kind, subjects)
    return [cap_to_dict(db, settings, cap) for cap in caps]


def cap_to_dict(db: Session, settings: Settings | None, cap: Cap) -> dict[str, Any]:
    """A cap as the API shows it, with what is used of it now."""
    out: dict[str, Any] = {"cap_id": None if cap.default else cap.id, "kind": cap.kind, "level": cap.level,
                           "id": cap.subject_id, "default": cap.default, "alert_thresholds": cap.alert_thresholds}
    if cap.kind == "sends":
        out.update(per_hour=cap.per_hour, per_day=cap.per_day, per_month=cap.per_month, used=send_use(db, cap))
    elif cap.kind in ("mailbox", "files"):
        metric = usage.MAILBOX_BYTES if cap.kind == "mailbox" else usage.FILES_BYTES
        used = usage.gauge(db, cap.tenant_id, metric, None if cap.level == "tenant" else cap.subject_id)
        out.update(limit_bytes=cap.limit_bytes, limit_gb=(cap.limit_bytes or 0) / GB, mode=cap.mode,
                   used={"bytes": used})
    else:
        spent = usage.usage_report(db, settings, cap.tenant_id, None)["spend"] if settings is not None else 0.0
        out.update(monthly_limit=cap.monthly_limit, mode=cap.mode, used={"spend": spent})
    return out


def banners(db: Session, settings: Settings, tenant_id: str) -> list[str]:
    """What the web UI shows on top: each cap at or past its first threshold, in words."""
    out = []
    for kind in ("sends", "mailbox", "files"):
        for cap in caps_of(db, settings, {tenant_id}, kind):
            first = min(cap.alert_thresholds or [100]) / 100
            for period, used, limit in _uses(db, cap):
                if limit and used >= first * limit:
                    out.append(f"The {cap.level} {kind} cap ({cap.subject_id}) is at {min(999, round(100 * used / limit))}% "
                               f"of {limit}{' per ' + period if kind == 'sends' else ' bytes'}.")
    return out


def _uses(db: Session, cap: Cap) -> list[tuple[str, int, int]]:
    if cap.kind == "sends":
        use = send_use(db, cap)
        return [(period, use.get(period, 0), getattr(cap, f)) for f, period in WINDOWS if getattr(cap, f)]
    metric = usage.MAILBOX_BYTES if cap.kind == "mailbox" else usage.FILES_BYTES
    return [("month", usage.gauge(db, cap.tenant_id, metric, None if cap.level == "tenant" else cap.subject_id),
             cap.limit_bytes or 0)]
