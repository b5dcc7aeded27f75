"""Issue 20: the operators of workflow conditions, a missing field, list fields, and `matches`
run by the regex module with a time budget (a hostile pattern on 10 KB ends within it)."""
from __future__ import annotations

import time

import pytest

from appliance.errors import ValidationError
from appliance.services.automation.workflow_conditions import Facts, check_condition, evaluate, holds

FACTS = {"from_address": "bill@vendor.test", "subject": "Invoice 42", "to_address": ["a@x.test", "b@x.test"],
         "has_attachments": True, "size": 12, "payload": {"label": "invoices"}}


@pytest.mark.parametrize(("field", "op", "value", "expected"), [
    ("from_address", "eq", "BILL@vendor.test", True), ("from_address", "neq", "bill@vendor.test", False),
    ("subject", "contains", "invoice", True), ("subject", "not_contains", "receipt", True),
    ("subject", "matches", r"^Invoice \d+$", True), ("subject", "matches", r"^invoice", False),
    ("to_address", "eq", "b@x.test", True), ("to_address", "neq", "b@x.test", False),
    ("to_address", "in", ["c@x.test", "A@x.test"], True), ("has_attachments", "eq", "true", True),
    ("size", "gt", 10, True), ("size", "lt", 10, False), ("subject", "gt", 1, False),
    ("payload.label", "eq", "invoices", True), ("enrichment.phishing", "eq", True, False),
    ("enrichment.phishing", "neq", True, False), ("enrichment.phishing", "not_contains", "x", False),
    ("enrichment.phishing", "exists", True, False), ("enrichment.phishing", "exists", False, True),
    ("subject", "exists", True, True)])
def test_operators(field, op, value, expected):
    assert holds({"field": field, "op": op, "value": value}, Facts(dict(FACTS)), 0.05) is expected


def test_a_hostile_pattern_on_10_kb_stops_at_the_budget():
    facts = Facts({"subject": "a" * 10240 + "!"})
    started = time.monotonic()
    matched, results = evaluate([{"field": "subject", "op": "matches", "value": "(a+)+$"}], facts, 0.05)
    assert time.monotonic() - started < 1.0
    assert not matched and results[0]["result"] is False and "took longer than" in facts.notes[0]


def test_conditions_are_checked_when_saved():
    assert check_condition(0, {"field": "header:List-Id", "op": "exists"})["value"] is True
    for bad, where in (({"field": "nope", "op": "eq"}, "conditions[0].field"),
                       ({"field": "subject", "op": "like"}, "conditions[0].op"),
                       ({"field": "subject", "op": "matches", "value": "("}, "conditions[0].value"),
                       ({"field": "subject", "op": "matches", "value": "x" * 1001}, "conditions[0].value"),
                       ({"field": "subject", "op": "gt", "value": True}, "conditions[0].value")):
        with pytest.raises(ValidationError) as caught:
            check_condition(0, bad)
        assert caught.value.field == where
