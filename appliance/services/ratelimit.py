"""Fixed-window counters kept in the store, so limits hold across processes and hosts."""
from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, select, text
from sqlalchemy.orm import Session

from appliance.errors import RateLimitedError
from appliance.models import RateCounter


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends
    window: int = 60  # the window's length in seconds
    policy: str = "default"  # the limit's name, as the IETF headers quote it

    def headers(self) -> dict[str, str]:
        """The X-RateLimit-* headers and the IETF draft's (draft-ietf-httpapi-ratelimit-headers) pair."""
        name = '"' + self.policy + '"'  # a Structured Fields string: the policy names carry no quotes
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset),
                "RateLimit-Policy": f"{name};q={self.limit};w={self.window}",
                "RateLimit": f"{name};r={self.remaining};t={self.reset}"}


def _policy(key: str) -> str:
    """The limit's public name from its counter key, without the IP, token id or address in it."""
    kind, _, rest = key.partition(":")
    suffix = rest.rsplit(":", 1)[-1]
    return f"{kind}-{suffix}" if suffix in NAMED_SUFFIXES else kind


NAMED_SUFFIXES = frozenset({"waitlist", "badtoken"})  # the per-IP limits with their own budget


KEY_LENGTH = 200  # the width of rate_counters.key


def _fit(key: str) -> str:
    """The key as stored: a long one (it may embed a caller-supplied email) keeps a prefix and a digest."""
    if len(key) <= KEY_LENGTH:
        return key
    return key[:KEY_LENGTH - 65] + "#" + hashlib.sha256(key.encode()).hexdigest()


# One statement, the same on SQLite (>= 3.35) and PostgreSQL: n more hits of one key's window (1 for
# `hit`, a slice for `Budgets`). Written as SQL text because it runs on every request: building it as
# an expression each time was a quarter of a request's CPU.
_HIT = text(
    'INSERT INTO rate_counters (key, "window", count, expires) VALUES (:key, :window, :n, :expires) '
    'ON CONFLICT (key, "window") DO UPDATE SET count = rate_counters.count + :n RETURNING count')


def _sweep_now_and_then(db: Session, older_than: int) -> None:
    """Once in about a hundred calls, drop the counters of windows that ended before older_than
    (keeps the table small)."""
    if random.random() < 0.01:
        db.execute(delete(RateCounter).where(RateCounter.expires < older_than))


def hit(db: Session, key: str, limit: int, window_seconds: int, *, now: float | None = None) -> RateState:
    """Count one request against key; raise RateLimitedError when the window is full."""
    now = time.time() if now is None else now
    key = _fit(key)
    window = int(now // window_seconds * window_seconds)
    reset = max(1, int(window + window_seconds - now))
    count = db.execute(_HIT, {"key": key, "window": window, "n": 1, "expires": window + window_seconds}).scalar_one()
    _sweep_now_and_then(db, int(now) - 60)
    state = RateState(limit=limit, remaining=max(0, limit - count), reset=reset, window=window_seconds,
                      policy=_policy(key))
    if count > limit:
        raise RateLimitedError(reset, headers=state.headers())
    return state


SLICE_MAX = 16  # the most hits a process reserves at once
SLICE_SHARE = 16  # ... and at most this fraction (1/16) of what it last saw left of the window


@dataclass
class _Slice:
    window: int
    seen: int = 0  # the window's shared count after this process's last reservation
    left: int = 0  # reserved hits this process has not used yet
    lock: threading.Lock = field(default_factory=threading.Lock)


class Budgets:
    """A process's per-key budgets: hits reserved from the shared counters in slices, so a busy key
    writes the store once per slice instead of once per hit (the per-token limit of every API call).

    The shared row counts every reserved hit, so across all processes and nodes a window never
    admits more than `limit` hits. The price is the other way: a process's unused reserved hits
    are no one else's, so a key served by P processes in one window may be refused after as few
    as limit - (P - 1) * (SLICE_MAX - 1) hits. A slice is at most SLICE_MAX and a 16th of what
    was left when the process last looked, so below 32 hits a window it is 1 (exact, as `hit`),
    and it shrinks to 1 as the window fills. X-RateLimit-Remaining is exact for one process and
    misses at most the other processes' unused slices. A full window is remembered: refused hits
    cost no store write (the count of a fixed window only grows until the window ends).
    """

    def __init__(self) -> None:
        self._slices: dict[str, _Slice] = {}
        self._lock = threading.Lock()

    def take(self, db: Session, key: str, limit: int, window_seconds: int, *,
             now: float | None = None) -> RateState:
        """Count one hit against key, from this process's slice or a new reservation (committed
        at once); raise RateLimitedError when the window is full."""
        now = time.time() if now is None else now
        key = _fit(key)
        window = int(now // window_seconds * window_seconds)
        current = self._slice(key, window)
        with current.lock:
            if current.left == 0 and current.seen < limit:
                self._reserve(db, current, key, limit, window + window_seconds)
            state = RateState(limit=limit, remaining=0, reset=max(1, int(window + window_seconds - now)),
                              window=window_seconds, policy=_policy(key))
            if current.left == 0:
                raise RateLimitedError(state.reset, headers=state.headers())
            current.left -= 1
            used = current.seen - current.left
        return RateState(limit=limit, remaining=max(0, limit - used), reset=state.reset, window=window_seconds,
                         policy=state.policy)

    def _slice(self, key: str, window: int) -> _Slice:
        with self._lock:
            current = self._slices.get(key)
            if current is None or current.window != window:
                if len(self._slices) >= 10_000:
                    self._slices.clear()  # simple bound: unused hits of past keys are lost (fewer admitted)
                current = self._slices[key] = _Slice(window)
            return current

    @staticmethod
    def _reserve(db: Session, current: _Slice, key: str, limit: int, expires: int) -> None:
        n = max(1, min(SLICE_MAX, (limit - current.seen) // SLICE_SHARE))
        try:
            total = db.execute(_HIT, {"key": key, "window": current.window, "n": n, "expires": expires}).scalar_one()
            _sweep_now_and_then(db, current.window - 60)
        finally:
            db.commit()  # no request holds a counter's lock while it works
        current.left = max(0, min(n, limit - (total - n)))  # the hits past the limit are no one's
        current.seen = total


def count(db: Session, key: str, window_seconds: int, *, now: float | None = None) -> int:
    """How many hits key has in the current window (without counting one)."""
    now = time.time() if now is None else now
    window = int(now // window_seconds * window_seconds)
    value = db.scalar(select(RateCounter.count).where(RateCounter.key == _fit(key), RateCounter.window == window))
    return value or 0


def window_reset(window_seconds: int, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return max(1, int(now // window_seconds * window_seconds + window_seconds - now))


def address_key(address: str) -> str:
    """The unit a client is counted as: an IPv4 address, or the /64 network of an IPv6 address
    (one subscriber gets a whole /64, so counting single IPv6 addresses counts nothing)."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address[:64]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# --- Growing delays: a key (an account) may try again only once its delay has passed ---------
# A delay row is a rate_counters row of window 0 (a fixed-window row's window is its start time):
# `count` holds the failures, `expires` the end of the current delay plus FORGET_AFTER, so the
# table's sweep removes the row a day after its delay ended and the failures are forgotten.
DELAY_WINDOW = 0
FORGET_AFTER = 86400


@dataclass(frozen=True)
class Backoff:
    free: int  # failures allowed before the first delay
    base: int  # seconds of the first delay; each further failure doubles it
    cap: int  # the longest delay, in seconds

    def delay(self, failures: int) -> int:
        """Seconds to wait after this many failures."""
        if failures < self.free:
            return 0
        return min(self.cap, self.base * 2 ** min(failures - self.free, 40))


_CLAIM_NEW = text('INSERT INTO rate_counters (key, "window", count, expires) VALUES (:key, 0, 1, :expires) '
                  'ON CONFLICT (key, "window") DO NOTHING')
_CLAIM = text('UPDATE rate_counters SET count = :count, expires = :expires '
              'WHERE key = :key AND "window" = 0 AND count = :old_count AND expires = :old_expires')


def claim_attempt(db: Session, key: str, backoff: Backoff, *, now: float, message: str) -> None:
    """Count an attempt as a failure before it is checked, or raise RateLimitedError while key waits.

    Counting first (compare-and-set, committed at once) means concurrent attempts cannot all slip
    in as the delay ends: each one claims its own turn. A success then calls `clear_attempts`.
    """
    key = _fit(key)
    for _ in range(5):
        row = db.execute(select(RateCounter.count, RateCounter.expires)
                         .where(RateCounter.key == key, RateCounter.window == DELAY_WINDOW)).first()
        # End the read before writing: the compare-and-set below needs no snapshot, and on SQLite
        # a read transaction that then writes fails at once if another writer came in between.
        db.commit()
        if row is not None and row.expires - FORGET_AFTER > now:
            raise RateLimitedError(math.ceil(row.expires - FORGET_AFTER - now), message)
        failures = row.count + 1 if row is not None and row.expires > now else 1
        until = int(now) + backoff.delay(failures)  # whole seconds: Retry-After is then the delay
        params = {"key": key, "count": failures, "expires": until + FORGET_AFTER}
        if row is None:
            done = db.execute(_CLAIM_NEW, params).rowcount
        else:
            done = db.execute(_CLAIM, {**params, "old_count": row.count, "old_expires": row.expires}).rowcount
        db.commit()
        if done == 1:
            return
    raise RateLimitedError(1, message)  # lost the race five times: someone else is trying hard


def attempt_failures(db: Session, key: str, *, now: float) -> int:
    """How many failures key has on record (0 once they are forgotten)."""
    row = db.execute(select(RateCounter.count, RateCounter.expires)
                     .where(RateCounter.key == _fit(key), RateCounter.window == DELAY_WINDOW)).first()
    return row.count if row is not None and row.expires > now else 0


def clear_attempts(db: Session, key: str) -> None:
    """Forget key's failures (the right password was given)."""
    db.execute(delete(RateCounter).where(and_(RateCounter.key == _fit(key), RateCounter.window == DELAY_WINDOW)))
