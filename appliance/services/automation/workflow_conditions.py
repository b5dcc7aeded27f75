"""The conditions of workflows (issue 20, contract section 14): what each field reads and what
each operator means, shared by the worker's runs and the dry run (`test`).

Fields read the message an event is about (`from_address`, `from_domain`, `to_address`,
`subject`, `body`, `has_attachments`, `label_id`, `authentication.dmarc`,
`enrichment.phishing`, `header:<Name>`) and the event itself (`type`, `payload.<key>`). A field
the message does not have (e.g. `enrichment.phishing` before the intelligence area sets it) is
missing, and every operator but `exists` is false on a missing field: a condition never matches
by accident. Text comparisons ignore case; a list field (`to_address`, `label_id`) matches when
one of its values does (`neq`/`not_contains`: when none does).

`matches` is a regular expression run by the `regex` module with a timeout
(settings.workflow_regex_timeout), never `re`: a hostile pattern such as `(a+)+$` against a long
subject stops at the budget and the condition is false (the run notes why). Mail content is data
here: it is compared, never executed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message as MailMessage
from typing import TYPE_CHECKING, Any, Callable

from appliance.errors import ValidationError

if TYPE_CHECKING:  # regex is imported by the first `matches` condition, not by every process
    import regex

OPS = ("eq", "neq", "contains", "not_contains", "matches", "in", "exists", "gt", "lt")
FIELDS = ("from_address", "from_domain", "to_address", "subject", "body", "has_attachments", "label_id",
          "authentication.dmarc", "enrichment.phishing", "type")
PREFIXES = ("header:", "payload.")
MAX_PATTERN = 1000
MAX_TEXT = 100_000  # characters of a body or header a condition reads
MISSING = object()


@dataclass
class Facts:
    """What conditions read about one event: its fields, headers read only when asked for."""

    values: dict[str, Any]
    headers: Callable[[], MailMessage | None] = lambda: None
    notes: list[str] = field(default_factory=list)  # why a condition was false other than a mismatch
    _parsed: Any = MISSING

    def get(self, name: str) -> Any:
        """The field's value, or MISSING."""
        if name.startswith("header:"):
            return self._header(name[len("header:"):])
        if name.startswith("payload."):
            payload = self.values.get("payload") or {}
            return payload.get(name[len("payload."):], MISSING)
        value = self.values.get(name, MISSING)
        return MISSING if value is None else value

    def _header(self, name: str) -> Any:
        if self._parsed is MISSING:
            self._parsed = self.headers()
        if self._parsed is None:
            return MISSING
        found = self._parsed.get_all(name) or []
        return [str(v)[:MAX_TEXT] for v in found] if found else MISSING


def check_condition(index: int, condition: dict) -> dict:
    """A condition as stored: a known field and operator, a value of the right shape, a pattern
    that compiles; 400 naming `conditions[i]…` otherwise."""
    where = f"conditions[{index}]"
    name, op = condition.get("field"), condition.get("op")
    if not isinstance(name, str) or not (name in FIELDS or (name.startswith(PREFIXES) and len(name) > 7)):
        raise ValidationError(f"{where}.field: not a condition field", field=f"{where}.field",
                              fix=f"Use one of {', '.join(FIELDS)}, header:<Name> or payload.<key>.")
    if op not in OPS:
        raise ValidationError(f"{where}.op: one of {', '.join(OPS)}", field=f"{where}.op")
    value = condition.get("value")
    if op == "in" and not isinstance(value, list):
        raise ValidationError(f"{where}.value: `in` takes a list", field=f"{where}.value")
    if op in ("gt", "lt") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValidationError(f"{where}.value: `{op}` takes a number", field=f"{where}.value")
    if op == "matches":
        _compile(value, f"{where}.value")
    if op == "exists" and value is None:
        value = True
    return {"field": name, "op": op, "value": value}


def _compile(pattern: Any, where: str) -> regex.Pattern:
    import regex

    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise ValidationError(f"{where}: a regular expression of 1 to {MAX_PATTERN} characters", field=where)
    try:
        return regex.compile(pattern)
    except (regex.error, ValueError, OverflowError) as exc:
        raise ValidationError(f"{where}: not a regular expression ({exc})", field=where) from None


def evaluate(conditions: list[dict], facts: Facts, timeout: float) -> tuple[bool, list[dict]]:
    """Whether every condition holds, and each one's result (the dry run shows them all)."""
    results = [{**c, "result": holds(c, facts, timeout)} for c in conditions]
    return all(r["result"] for r in results), results


def holds(condition: dict, facts: Facts, timeout: float) -> bool:
    """One condition against the facts (false on a missing field, except for `exists`)."""
    op, expected = condition["op"], condition.get("value")
    actual = facts.get(condition["field"])
    if op == "exists":
        return (actual is not MISSING and actual != []) == bool(expected)
    if actual is MISSING:
        return False
    values = actual if isinstance(actual, list) else [actual]
    if op in ("neq", "not_contains"):
        positive = "eq" if op == "neq" else "contains"
        return not any(_one(positive, v, expected, facts, timeout) for v in values)
    return any(_one(op, v, expected, facts, timeout) for v in values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:MAX_TEXT].casefold()


def _one(op: str, actual: Any, expected: Any, facts: Facts, timeout: float) -> bool:
    if op == "eq":
        return _text(actual) == _text(expected)
    if op == "contains":
        return _text(expected) in _text(actual)
    if op == "in":
        return _text(actual) in {_text(v) for v in expected or []}
    if op in ("gt", "lt"):
        number = _number(actual)
        return number is not None and (number > expected if op == "gt" else number < expected)
    if op == "matches":
        return _matches(expected, actual, facts, timeout)
    return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(pattern: str, actual: Any, facts: Facts, timeout: float) -> bool:
    """regex.search within the time budget; a timeout (or a pattern that no longer compiles) is
    no match, noted for the run."""
    import regex

    text = actual if isinstance(actual, str) else _text(actual)
    try:
        return regex.search(pattern, text[:MAX_TEXT], timeout=timeout) is not None
    except TimeoutError:
        facts.notes.append(f"`matches` {pattern[:60]!r} took longer than {timeout:g} s: no match")
    except (regex.error, ValueError, OverflowError):
        facts.notes.append(f"`matches` {pattern[:60]!r} is not a regular expression: no match")
    return False
