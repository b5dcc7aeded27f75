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
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_CLOCK = r"(\s+(at\s+)?\d{1,2}([:.]\d{2})?\s*(am|pm)|\s+(at\s+)?\d{1,2}:\d{2})?"
_DATE = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}}(T\d{{2}}:\d{{2}})?|(today|tonight|tomorrow|(next\s+)?{_DAY}|"
    rf"{_MONTH}\s+\d{{1,2}}(st|nd|rd|th)?(,?\s+\d{{4}})?|\d{{1,2}}(st|nd|rd|th)?\s+(of\s+)?{_MONTH}(\s+\d{{4}})?)"
    rf"{_CLOCK})\b", re.I)


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
    """The dates and times written in text, read by the calendar's time parser: (phrase, UTC instant)."""
    out: list[tuple[str, dt.datetime]] = []
    for match in _DATE.finditer(text[:20_000]):
        phrase = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", match.group(1), flags=re.I).replace(" of ", " ")
        try:
            found = timeinput.parse_instant(phrase, zone=zone, now=now, field="due")
        except (ValidationError, ValueError, OverflowError):
            continue
        out.append((match.group(1), found.at))
        if len(out) >= 10:
            break
    return out


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
