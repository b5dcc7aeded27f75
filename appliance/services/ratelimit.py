"""Fixed-window counters kept in the store, so limits hold across processes and hosts."""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from appliance.errors import RateLimitedError
from appliance.models import RateCounter


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


KEY_LENGTH = 200  # the width of rate_counters.key


def _fit(key: str) -> str:
    """The key as stored: a long one (it may embed a caller-supplied email) keeps a prefix and a digest."""
    if len(key) <= KEY_LENGTH:
        return key
    return key[:KEY_LENGTH - 65] + "#" + hashlib.sha256(key.encode()).hexdigest()


# One statement, the same on SQLite (>= 3.35) and PostgreSQL. Written as SQL text because it runs
# on every request: building it as an expression each time was a quarter of a request's CPU.
_HIT = text(
    'INSERT INTO rate_counters (key, "window", count, expires) VALUES (:key, :window, 1, :expires) '
    'ON CONFLICT (key, "window") DO UPDATE SET count = rate_counters.count + 1 RETURNING count')


def hit(db: Session, key: str, limit: int, window_seconds: int, *, now: float | None = None) -> RateState:
    """Count one request against key; raise RateLimitedError when the window is full."""
    now = time.time() if now is None else now
    key = _fit(key)
    window = int(now // window_seconds * window_seconds)
    reset = max(1, int(window + window_seconds - now))
    count = db.execute(_HIT, {"key": key, "window": window, "expires": window + window_seconds}).scalar_one()
    if random.random() < 0.01:  # occasional sweep keeps the table small
        db.execute(delete(RateCounter).where(RateCounter.expires < int(now) - 60))
    state = RateState(limit=limit, remaining=max(0, limit - count), reset=reset)
    if count > limit:
        raise RateLimitedError(reset, headers=state.headers())
    return state


def count(db: Session, key: str, window_seconds: int, *, now: float | None = None) -> int:
    """How many hits key has in the current window (without counting one)."""
    now = time.time() if now is None else now
    window = int(now // window_seconds * window_seconds)
    value = db.scalar(select(RateCounter.count).where(RateCounter.key == _fit(key), RateCounter.window == window))
    return value or 0


def window_reset(window_seconds: int, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return max(1, int(now // window_seconds * window_seconds + window_seconds - now))
