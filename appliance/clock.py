"""The one source of 'now', so tests can move time (token expiry, rate windows)."""
from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def utcnow() -> dt.datetime:
    """Timezone-aware current UTC time (shifted by `advance` in tests)."""
    return dt.datetime.now(dt.timezone.utc) + _offset


def advance(delta: dt.timedelta) -> None:
    """Move the clock forward (tests only)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)
