"""Prefixed, time-sortable identifiers (a ULID after the prefix): `usr_01J…`."""
from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, sorts like the numbers


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A new id: prefix, underscore, 10 chars of milliseconds and 16 of randomness."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def has_prefix(value: str, prefix: str) -> bool:
    """True when value looks like an id with this prefix (cheap check before a lookup)."""
    return isinstance(value, str) and value.startswith(prefix + "_") and len(value) == len(prefix) + 27
