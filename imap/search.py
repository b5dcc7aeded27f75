"""Sequence sets and SEARCH criteria (RFC 3501 sections 6.4.4 and 9)."""
from __future__ import annotations

import datetime as dt
import email.header
import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field

from imap.protocol import Atom, CommandError, astring

MAX_RANGES = 10_000


def sequence_set(text: str, largest: int) -> set[int]:
    """The numbers of a sequence set (`*` is largest); ranges are clipped to 1..largest+."""
    if not isinstance(text, Atom) or not text:
        raise CommandError("Bad sequence set")
    out: set[int] = set()
    ranges = text.split(",")
    if len(ranges) > MAX_RANGES:
        raise CommandError("Sequence set too long")
    for item in ranges:
        low, _, high = item.partition(":")
        a, b = _number(low, largest), _number(high, largest) if high else None
        if b is None:
            out.add(a)
        else:
            a, b = min(a, b), max(a, b)
            out.update(range(a, min(b, max(largest, a)) + 1))
    return out


def _number(text: str, largest: int) -> int:
    if text == "*":
        return max(largest, 1)
    if not text.isdigit() or len(text) > 10 or int(text) == 0:
        raise CommandError("Bad sequence number")
    return int(text)


@dataclass
class Candidate:
    """What a criterion looks at: the message's numbers and flags, its parsed form only on demand."""

    seq: int
    uid: int
    flags: frozenset
    size: int
    internal_date: dt.datetime
    load: Callable[[], object]
    _parsed: object = field(default=None, repr=False)

    @property
    def message(self):  # noqa: ANN201 - an email.message.Message
        if self._parsed is None:
            self._parsed = self.load()
        return self._parsed


_FLAG_KEYS = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft", "FLAGGED": "\\Flagged",
              "SEEN": "\\Seen"}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
Predicate = Callable[[Candidate], bool]


def _date(token: object) -> dt.date:
    try:
        return dt.datetime.strptime(astring(token), "%d-%b-%Y").date()
    except ValueError:
        raise CommandError("Bad date (use d-Mon-yyyy)") from None


def _decoded(value: object) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # noqa: BLE001 - a malformed encoded word: search the raw text
        return str(value)


def _header_has(c: Candidate, name: str, needle: str) -> bool:
    return any(needle in _decoded(v).lower() for v in (c.message.get_all(name) or []))


def _text_of(c: Candidate) -> str:
    parts = []
    for part in c.message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts).lower()


def _sent_date(c: Candidate) -> dt.date | None:
    try:
        return email.utils.parsedate_to_datetime(str(c.message.get("date"))).date()
    except (TypeError, ValueError):
        return None


class Compiler:
    """Criteria tokens to one predicate; `largest_seq`/`largest_uid` resolve `*`."""

    def __init__(self, largest_seq: int, largest_uid: int) -> None:
        self.largest_seq, self.largest_uid = largest_seq, largest_uid

    def compile(self, tokens: list) -> Predicate:
        tokens = list(tokens)
        if len(tokens) >= 2 and isinstance(tokens[0], str) and tokens[0].upper() == "CHARSET":
            if astring(tokens[1]).upper() not in ("UTF-8", "US-ASCII"):
                raise CommandError("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset", status="NO")
            tokens = tokens[2:]
        preds = []
        while tokens:
            preds.append(self._one(tokens))
        return lambda c: all(p(c) for p in preds)

    def _take(self, tokens: list) -> object:
        if not tokens:
            raise CommandError("Missing search argument")
        return tokens.pop(0)

    def _one(self, tokens: list) -> Predicate:  # noqa: C901 - one branch per search key
        token = self._take(tokens)
        if isinstance(token, list):
            return self.compile(token)
        if not isinstance(token, Atom):
            raise CommandError("Bad search key")
        key = token.upper()
        if key == "ALL":
            return lambda c: True
        if key in _FLAG_KEYS:
            flag = _FLAG_KEYS[key]
            return lambda c: flag in c.flags
        if key.startswith("UN") and key[2:] in _FLAG_KEYS:
            flag = _FLAG_KEYS[key[2:]]
            return lambda c: flag not in c.flags
        if key in ("NEW", "RECENT"):
            return lambda c: False  # no session sees a message as recent (\Recent is not kept)
        if key == "OLD":
            return lambda c: True
        if key in ("KEYWORD", "UNKEYWORD"):
            word = astring(self._take(tokens))
            return (lambda c: word in c.flags) if key == "KEYWORD" else (lambda c: word not in c.flags)
        if key == "NOT":
            inner = self._one(tokens)
            return lambda c: not inner(c)
        if key == "OR":
            left, right = self._one(tokens), self._one(tokens)
            return lambda c: left(c) or right(c)
        if key == "UID":
            uids = sequence_set(self._take(tokens), self.largest_uid)
            return lambda c: c.uid in uids
        if key in _HEADER_KEYS:
            needle, name = astring(self._take(tokens)).lower(), _HEADER_KEYS[key]
            return lambda c: _header_has(c, name, needle)
        if key == "HEADER":
            name, needle = astring(self._take(tokens)).lower(), astring(self._take(tokens)).lower()
            return lambda c: _header_has(c, name, needle)
        if key in ("BODY", "TEXT"):
            needle = astring(self._take(tokens)).lower()
            if key == "BODY":
                return lambda c: needle in _text_of(c)
            return lambda c: needle in _text_of(c) or any(needle in _decoded(v).lower()
                                                          for v in c.message.values())
        if key in ("LARGER", "SMALLER"):
            size = astring(self._take(tokens))
            if not size.isdigit():
                raise CommandError("Bad size")
            n = int(size)
            return (lambda c: c.size > n) if key == "LARGER" else (lambda c: c.size < n)
        if key in ("BEFORE", "ON", "SINCE"):
            day = _date(self._take(tokens))
            return _compare(key, day, lambda c: c.internal_date.date())
        if key in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = _date(self._take(tokens))
            return _compare(key[4:], day, _sent_date)
        if key[0].isdigit() or key[0] == "*":
            seqs = sequence_set(token, self.largest_seq)
            return lambda c: c.seq in seqs
        raise CommandError(f"Unknown search key {key[:40]}")


def _compare(kind: str, day: dt.date, get: Callable[[Candidate], dt.date | None]) -> Predicate:
    def test(c: Candidate) -> bool:
        value = get(c)
        if value is None:
            return False
        return value < day if kind == "BEFORE" else value == day if kind == "ON" else value >= day
    return test
