"""Prefixed, time-sortable identifiers (a ULID after the prefix): `usr_01J…`."""
from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, sorts like the numbers


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the newest id made in this process


def new_id(prefix: str) -> str:
    """A new id: prefix, underscore, 10 chars of milliseconds and 16 of randomness.

    Monotonic within a process (as ULID specifies): ids made in the same millisecond increment
    the random part, so events written together list in the order they were written.
    """
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_rand = _last
        if millis <= last_millis and last_rand < (1 << 80) - 1:
            millis, rand = last_millis, last_rand + 1
        else:
            rand = secrets.randbits(79)  # leave headroom for increments within the millisecond
        _last = (millis, rand)
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def has_prefix(value: str, prefix: str) -> bool:
    """True when value looks like an id with this prefix (cheap check before a lookup)."""
    return isinstance(value, str) and value.startswith(prefix + "_") and len(value) == len(prefix) + 27
