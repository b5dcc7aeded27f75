"""The next step of a received message without a model (issue 21 point 4).

The body's own words only: quoted text and signatures are cut off first (`own_text`), then the
action is, in order: `review` for mail judged phishing (act on nothing it asks), `pay` for an
invoice or payment request (not a receipt), `schedule` for a meeting or a deadline with a date
(found with the calendar's time parser, appliance/timeinput.py, read in the inbox's zone from the
message's arrival), `reply` for a question or request to the reader in personal mail,
`unsubscribe` for bulk mail with List-Unsubscribe, `review` for mail with attachments to look at,
else `none`. The summary is the sentence that decided it (or the first one); `due` the date found.
"""
from __future__ import annotations

import datetime as dt
import re

from appliance import timeinput
from appliance.errors import ValidationError
from appliance.services.intelligence.mailparts import Mail

ACTIONS = ("reply", "schedule", "pay", "review", "unsubscribe", "none")
MAX_SUMMARY = 240

_QUOTE_START = re.compile(
    r"^(on .{4,200}wrote:\s*$|-{2,}\s*original message\s*-{2,}|-{5,}\s*forwarded message|from:\s.+$|"
    r"_{10,}\s*$|am .{4,120}schrieb.*:\s*$|le .{4,120}a écrit\s*:\s*$)", re.I)
_SIGNATURE = re.compile(r"^(-- ?|—|sent from my \w+.*|get outlook for .*|(best|kind|warm)?\s*regards,?|"
                        r"best,|thanks,|thank you,|cheers,|sincerely,|yours,)\s*$", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}|\n(?=[-*•] )")
_REQUEST = re.compile(r"^(can|could|would|will|do|did|are|is|have|should|shall)\s+(you|we|i)\b|"
                      r"^(please|kindly|let me know|let us know|send me|tell me|remind me)\b|"
                      r"\b(could you|can you|would you|please (send|review|confirm|check|let|reply|get back|share))\b",
                      re.I)
_INVOICE = re.compile(r"\b(invoice|amount due|payment due|balance due|due date|please (pay|remit)|outstanding "
                      r"(balance|invoice|amount)|pay (by|before|now)|payment request|wire transfer|bank transfer)\b", re.I)
_RECEIPT = re.compile(r"\b(receipt|payment (was )?received|thank(s| you) for your (payment|order|purchase)|"
                      r"has been paid|paid in full|order confirmation|you paid|successfully paid)\b", re.I)
_MEETING = re.compile(r"\b(meet|meeting|call|appointment|interview|webinar|lunch|dinner|coffee|catch up|catch-up|"
                      r"deadline|due|submit|conference|session|visit|reservation|booking)\b", re.I)
_MONTH = (r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATE = re.compile(
    rf"\b(?:(?P<iso>\d{{4}}-\d{{2}}-\d{{2}}(?:T\d{{2}}:\d{{2}})?)|(?P<rel>today|tonight|tomorrow)|"
    rf"(?:next\s+)?(?P<wd>{'|'.join(_WEEKDAYS)})|"
    rf"{_MONTH.replace('(', '(?P<mon1>', 1)}\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<y1>\d{{4}}))?|"
    rf"(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH.replace('(', '(?P<mon2>', 1)}(?:\s+(?P<y2>\d{{4}}))?)"
    rf"(?:\s+(?:at\s+)?(?P<h>\d{{1,2}})(?:[:.](?P<mi>\d{{2}}))?\s*(?P<ap>am|pm)\b|\s+(?:at\s+)?(?P<h2>\d{{1,2}}):(?P<mi2>\d{{2}}))?"
    rf"\b", re.I)


def own_text(text: str) -> str:
    """The sender's own words: quoted replies, forwarded parts and the signature cut off."""
    kept: list[str] = []
    for line in (text or "").replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped.startswith(">") or _QUOTE_START.match(stripped):
            break
        if _SIGNATURE.match(stripped) and kept:
            break
        kept.append(line)
    return "\n".join(kept).strip()


def sentences(text: str) -> list[str]:
    """The text cut into sentences (whitespace folded), short fragments dropped."""
    out = []
    for piece in _SENTENCE.split(text):
        piece = " ".join((piece or "").split())
        if len(piece) >= 8:
            out.append(piece[:400])
    return out


def is_request(sentence: str) -> bool:
    """A question or a request made to the reader."""
    return sentence.rstrip().endswith("?") or bool(_REQUEST.search(sentence))


def find_dates(text: str, *, now: dt.datetime, zone: str) -> list[tuple[str, dt.datetime]]:
    """The dates and times written in text, read by the calendar's time parser in `zone` from `now`:
    (phrase, UTC instant). Each phrase is first written as an ISO 8601 wall-clock time (the forms
    the pattern knows: ISO dates, today/tomorrow, weekdays, '18 December', 'Dec 18, 2026', with a
    clock time), which timeinput reads in the zone without a round through its phrase parser
    (dateparser costs some 100 ms a phrase; a worker judges hundreds of messages a second)."""
    out: list[tuple[str, dt.datetime]] = []
    local = now.astimezone(timeinput.zone_info(zone)).replace(tzinfo=None)
    for match in _DATE.finditer(text[:20_000]):
        wall = _wall_clock(match, local)
        if wall is None:
            continue
        try:
            found = timeinput.parse_instant(wall, zone=zone, now=now, field="due")
        except (ValidationError, ValueError, OverflowError):
            continue
        out.append((match.group(0), found.at))
        if len(out) >= 10:
            break
    return out


def _wall_clock(match: re.Match, local: dt.datetime) -> str | None:
    """The matched phrase as an ISO 8601 wall-clock time, or None when it names no real day."""
    if match.group("iso"):
        return match.group("iso")
    day = _day_of(match, local.date())
    if day is None:
        return None
    hour, minute = _clock_of(match)
    if hour is None and (match.group("rel") or "").lower() == "tonight":
        hour, minute = 20, 0
    return day.isoformat() if hour is None else f"{day.isoformat()}T{hour:02d}:{minute:02d}"


def _day_of(match: re.Match, today: dt.date) -> dt.date | None:
    rel, weekday = (match.group("rel") or "").lower(), (match.group("wd") or "").lower()
    if rel:
        return today + dt.timedelta(days=1 if rel == "tomorrow" else 0)
    if weekday:  # the first such day after today ('next Monday' too, as timeinput reads it)
        ahead = (_WEEKDAYS.index(weekday) - today.weekday() - 1) % 7 + 1
        return today + dt.timedelta(days=ahead)
    month = (match.group("mon1") or match.group("mon2") or "")[:3].lower()
    number, year = int(match.group("d1") or match.group("d2")), match.group("y1") or match.group("y2")
    month_number = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec").index(month) + 1
    try:
        day = dt.date(int(year) if year else today.year, month_number, number)
        if not year and day < today:  # '18 March' in December: next March
            day = day.replace(year=today.year + 1)
    except ValueError:  # 30 February, year 0
        return None
    return day


def _clock_of(match: re.Match) -> tuple[int | None, int]:
    if match.group("h2"):
        hour, minute = int(match.group("h2")), int(match.group("mi2"))
    elif match.group("h"):
        hour, minute = int(match.group("h")), int(match.group("mi") or 0)
        if not 1 <= hour <= 12:
            return None, 0
        hour = hour % 12 + (12 if match.group("ap").lower() == "pm" else 0)
    else:
        return None, 0
    return (hour, minute) if hour < 24 and minute < 60 else (None, 0)


def next_step(mail: Mail, *, verdict: str = "safe", automated: bool = False, now: dt.datetime,
              zone: str = "UTC") -> dict:
    """The stored `enrichment.next_step`: {action, summary, due}."""
    text = own_text(mail.text)
    said = sentences(f"{mail.subject}.\n\n{text}" if mail.subject else text)
    first = said[1] if len(said) > 1 and mail.subject else (said[0] if said else mail.subject)
    if verdict == "phishing":
        return _step("review", "Likely phishing: do not follow its links or requests.", None)
    body = f"{mail.subject}\n{text}"
    if _INVOICE.search(body) and not _RECEIPT.search(body):
        dates = find_dates(body, now=now, zone=zone)
        return _step("pay", _sentence_with(said, _INVOICE) or first, _first_future(dates, now))
    dates = find_dates(body, now=now, zone=zone)
    calendar = any(p.content_type == "text/calendar" for p in mail.attachments)
    if calendar or (dates and _MEETING.search(body) and not automated):
        return _step("schedule", _sentence_with(said, _DATE) or first, _first_future(dates, now))
    asked = [s for s in said if is_request(s)]
    if asked and not automated:
        return _step("reply", asked[0], _first_future(dates, now))
    if "list-unsubscribe" in mail.headers and (automated or "list-id" in mail.headers):
        return _step("unsubscribe", first or "Bulk mail with an unsubscribe link.", None)
    if any(p.filename for p in mail.attachments):
        return _step("review", f"Attachments to look at: {', '.join(p.filename for p in mail.attachments[:3])}", None)
    return _step("none", first or "", None)


def _sentence_with(said: list[str], pattern: re.Pattern) -> str | None:
    return next((s for s in said if pattern.search(s)), None)


def _first_future(dates: list[tuple[str, dt.datetime]], now: dt.datetime) -> dt.datetime | None:
    ahead = sorted(at for _, at in dates if at >= now - dt.timedelta(hours=12))
    return ahead[0] if ahead else None


def _step(action: str, summary: str, due: dt.datetime | None) -> dict:
    return {"action": action, "summary": (summary or "")[:MAX_SUMMARY],
            "due": due.astimezone(dt.timezone.utc).isoformat() if due else None}
