"""Ids: a prefix, an underscore and a ULID (10 chars of milliseconds, 16 of randomness)."""
from __future__ import annotations

import re
import time

from appliance.ids import has_prefix, new_id

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def decode_millis(value: str) -> int:
    millis = 0
    for char in value.split("_", 1)[1][:10]:
        millis = millis * 32 + ALPHABET.index(char)
    return millis


def test_shape() -> None:
    value = new_id("usr")
    assert re.fullmatch(r"usr_[0-9A-HJKMNP-TV-Z]{26}", value), value
    assert len(value) == len("usr") + 1 + 26
    assert len(new_id("wl")) == len("wl") + 1 + 26


def test_the_time_part_is_now() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id("msg")
    after = time.time_ns() // 1_000_000
    assert before <= decode_millis(value) <= after


def test_ids_sort_by_creation_time() -> None:
    made = []
    for _ in range(20):
        made.append(new_id("evt"))
        time.sleep(0.002)  # a later millisecond each time; within one millisecond order is random
    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_ids_within_one_millisecond_are_unique() -> None:
    values = {new_id("tok") for _ in range(10_000)}
    assert len(values) == 10_000


def test_has_prefix() -> None:
    value = new_id("inb")
    assert has_prefix(value, "inb")
    assert not has_prefix(value, "in")
    assert not has_prefix(value, "usr")
    assert not has_prefix(value[:-1], "inb")
    assert not has_prefix(None, "inb")  # type: ignore[arg-type]
