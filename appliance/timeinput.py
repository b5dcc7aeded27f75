"""One parser for every time field of the API: instants and durations, ISO 8601 or worded.

The rules for daylight-saving changes are written down in docs/time.md; in short:
- naive values are wall-clock times in the given zone (UTC when none);
- a wall-clock time that does not exist (spring forward) moves forward by the gap;
- a wall-clock time that happens twice (fall back) means the first occurrence (fold=0);
- days and weeks are calendar days in the zone (the wall-clock time is kept), while hours,
  minutes and seconds are elapsed time.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import isodate

from appliance import clock
from appliance.errors import ValidationError

UTC = dt.timezone.utc

INSTANT_FIX = ("Send ISO 8601 ('2026-03-29T10:00:00+02:00', '2026-03-29T10:00Z', '2026-03-29T10:00' "
               "in the inbox's zone, '2026-03-29T10:00[Europe/Berlin]'), a phrase ('tomorrow 10am', "
               "'next Monday 9:00') or a relative time ('in 2 hours', '3 days ago').")
DURATION_FIX = ("Send an ISO 8601 duration ('PT30M', 'P3D', 'P1W', 'PT1H30M') or words "
                "('30 minutes', '1 hour 30 minutes', '3 days', '2 weeks').")


class Instant(NamedTuple):
    """An aware UTC instant and the IANA zone its wall-clock reading was taken in."""

    at: dt.datetime
    zone: str


class Duration(NamedTuple):
    """A parsed duration: calendar `days` (weeks included) plus elapsed `clock` time."""

    days: int
    clock: dt.timedelta
    iso: str

    @property
    def delta(self) -> dt.timedelta:
        """The duration as a plain timedelta (days counted as 24 h)."""
        return dt.timedelta(days=self.days) + self.clock


def zone_info(name: str | None, *, field: str = "time_zone") -> zoneinfo.ZoneInfo:
    """The ZoneInfo for an IANA name (UTC when None); an unknown name is `invalid_time`."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"'{name}' is not an IANA time zone", field=field, code="invalid_time",
                              fix="Send an IANA zone name such as Europe/Berlin or America/New_York.") from None


def localize(naive: dt.datetime, zone: str | None) -> dt.datetime:
    """Wall-clock time in `zone` → aware UTC: gaps shift forward, repeated times take the first."""
    # fold=0 means: in a gap, use the offset from before the change (so the instant lands after
    # the gap, shifted forward by its length); in a repeated hour, the first (earlier) occurrence.
    return naive.replace(tzinfo=zone_info(zone), fold=0).astimezone(UTC)


def add(at: dt.datetime, duration: Duration, zone: str | None) -> dt.datetime:
    """`at` plus `duration`: calendar days in `zone` (wall clock kept), then elapsed clock time."""
    if duration.days:
        wall = at.astimezone(zone_info(zone)).replace(tzinfo=None)
        at = localize(wall + dt.timedelta(days=duration.days), zone)
    return (at + duration.clock).astimezone(UTC)


def subtract(at: dt.datetime, duration: Duration, zone: str | None) -> dt.datetime:
    """`at` minus `duration`, by the same rules as `add`."""
    back = Duration(-duration.days, -duration.clock, duration.iso)
    return add(at, back, zone)


# ---------------------------------------------------------------- durations

_UNITS = {"w": "weeks", "wk": "weeks", "wks": "weeks", "week": "weeks", "weeks": "weeks",
          "d": "days", "day": "days", "days": "days",
          "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
          "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
          "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds"}
_WORD_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_WORD_GLUE = re.compile(r"^(?:\s|,|and\b)*$")


def _invalid_duration(value: object, field: str) -> ValidationError:
    return ValidationError(f"{field} '{value}' is not a duration", field=field, code="invalid_time",
                           fix=DURATION_FIX)


def _iso(days: int, clock_part: dt.timedelta) -> str:
    """Canonical ISO 8601 text: calendar days as 'nD', elapsed time under 'T'."""
    seconds = Decimal(clock_part.days * 86400 + clock_part.seconds) + Decimal(clock_part.microseconds) / 1000000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    time = "".join(f"{int(n) if unit != 'S' else _num(n)}{unit}"
                   for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    if time:
        text += "T" + time
    return text if text != "P" else "PT0S"


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _from_words(text: str, field: str) -> Duration:
    amounts = {"weeks": Decimal(0), "days": Decimal(0), "hours": Decimal(0),
               "minutes": Decimal(0), "seconds": Decimal(0)}
    pos, seen = 0, False
    for part in _WORD_PART.finditer(text):
        unit = _UNITS.get(part.group(2))
        if unit is None or not _WORD_GLUE.match(text[pos:part.start()]):
            raise _invalid_duration(text, field)
        amounts[unit] += Decimal(part.group(1))
        pos, seen = part.end(), True
    if not seen or not _WORD_GLUE.match(text[pos:]):
        raise _invalid_duration(text, field)
    days = amounts["weeks"] * 7 + amounts["days"]
    if days != days.to_integral_value():
        raise _invalid_duration(text, field)  # half a calendar day has no wall-clock meaning
    clock_part = dt.timedelta(hours=float(amounts["hours"]), minutes=float(amounts["minutes"]),
                              seconds=float(amounts["seconds"]))
    return Duration(int(days), clock_part, _iso(int(days), clock_part))


def _from_iso(text: str, field: str) -> Duration:
    try:
        parsed = isodate.parse_duration(text.upper())
    except (isodate.ISO8601Error, ValueError, TypeError, InvalidOperation):
        raise _invalid_duration(text, field) from None
    if isinstance(parsed, isodate.Duration):
        raise ValidationError(f"{field} '{text}' uses months or years, which have no fixed length",
                              field=field, code="invalid_time", fix=DURATION_FIX)
    date_part, _, time_part = text.upper().partition("T")
    days = isodate.parse_duration(date_part).days if date_part != "P" else 0
    clock_part = isodate.parse_duration("PT" + time_part) if time_part else dt.timedelta(0)
    return Duration(days, clock_part, _iso(days, clock_part))


def parse_duration(value: object, *, field: str = "duration") -> Duration:
    """Parse 'PT30M', 'P3D', '30 minutes', '1 hour 30 minutes', '3 days' into a Duration."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid_duration(value, field)
    text = value.strip().lower()
    if not re.search(r"\d", text):
        raise _invalid_duration(value, field)
    if text.startswith("-"):
        raise ValidationError(f"{field} must not be negative", field=field, code="invalid_time", fix=DURATION_FIX)
    try:
        return _from_iso(text, field) if text.startswith("p") else _from_words(text, field)
    except ValidationError as exc:
        exc.message = exc.message.replace(f"'{text}'", f"'{value.strip()}'")
        raise


# ---------------------------------------------------------------- instants

_BRACKET_ZONE = re.compile(r"^(?P<value>.+?)\s*\[(?P<zone>[A-Za-z0-9_+\-/]+)\]$")
_TRAILING_ZONE = re.compile(r"^(?P<value>\d{4}-.+?)\s+(?P<zone>[A-Za-z]+(?:/[A-Za-z0-9_+\-]+)+|UTC)$")
_RELATIVE = re.compile(r"^(?:in\s+(?P<ahead>.+)|(?P<back>.+?)\s+ago)$")
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_NEXT_DAY = re.compile(r"\bnext\s+(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b")


def _invalid_instant(value: object, field: str) -> ValidationError:
    return ValidationError(f"{field} '{value}' is not a time this server understands", field=field,
                           code="invalid_time", fix=INSTANT_FIX)


def _split_zone(text: str, zone: str | None, field: str) -> tuple[str, str | None, bool]:
    """Peel a trailing '[Zone/Name]' or ' Zone/Name' off an ISO value; say if one was named."""
    match = _BRACKET_ZONE.match(text) or _TRAILING_ZONE.match(text)
    if match is None:
        return text, zone, False
    zone_info(match.group("zone"), field=field)
    return match.group("value"), match.group("zone"), True


def _from_iso_instant(text: str, zone: str | None, field: str) -> Instant | None:
    body, used, named = _split_zone(text, zone, field)
    if not re.match(r"^\d{4}-?\d{2}-?\d{2}", body):
        return None
    try:
        parsed = dt.datetime.fromisoformat(body.replace(" ", "T", 1) if "T" not in body else body)
    except ValueError:
        raise _invalid_instant(text, field) from None
    if parsed.tzinfo is None:
        return Instant(localize(parsed, used), used or "UTC")
    # An explicit offset fixes the instant; the named zone (if any) is still the zone used.
    return Instant(parsed.astimezone(UTC), used if named else "UTC")


def _from_relative(text: str, now: dt.datetime, zone: str | None, field: str) -> Instant | None:
    match = _RELATIVE.match(text)
    if match is None:
        return None
    phrase = match.group("ahead") or match.group("back")
    try:
        duration = parse_duration(phrase, field=field)
    except ValidationError:
        return None  # 'in March', 'in 2 months': left to the phrase parser
    at = add(now, duration, zone) if match.group("ahead") else subtract(now, duration, zone)
    return Instant(at, zone or "UTC")


def _from_phrase(text: str, now: dt.datetime, zone: str | None, field: str) -> Instant:
    if not re.search(r"[a-z]", text) or any(int(h) > 23 or int(m) > 59 for h, m in _CLOCK.findall(text)):
        raise _invalid_instant(text, field)  # bare numbers and '25:00' are guesses dateparser would make
    wall_now = now.astimezone(zone_info(zone)).replace(tzinfo=None)
    # 'next Monday' is the first Monday after today: the weekday alone, preferring the future.
    phrase = _NEXT_DAY.sub(lambda m: m.group(1), text)
    import dateparser  # here: its import costs ~10 MB, and most requests carry ISO times
    parsed = dateparser.parse(phrase, languages=["en"], settings={
        "RELATIVE_BASE": wall_now, "PREFER_DATES_FROM": "future", "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False, "DATE_ORDER": "YMD", "PARSERS": [
            "relative-time", "absolute-time"]})
    if parsed is None:
        raise _invalid_instant(text, field)
    if parsed.tzinfo is not None:
        return Instant(parsed.astimezone(UTC), "UTC")
    return Instant(localize(parsed, zone), zone or "UTC")


def parse_instant(value: object, *, zone: str | None, now: dt.datetime | None = None,
                  field: str = "time") -> Instant:
    """Parse an ISO 8601 value, a phrase or a relative time; naive readings are in `zone`."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise _invalid_instant(value, field)
    zone_info(zone)
    now = (now or clock.utcnow()).astimezone(UTC)
    text = " ".join(value.strip().split())
    found = _from_iso_instant(text, zone, field)
    if found is not None:
        return found
    lowered = text.lower()
    return _from_relative(lowered, now, zone, field) or _from_phrase(lowered, now, zone, field)


def render(at: dt.datetime | None, zone: str | None) -> str | None:
    """An instant as ISO 8601 in `zone` (with its offset), or None."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # SQLite returns naive UTC
    return at.astimezone(zone_info(zone)).isoformat()
