"""The pure parts of webhook delivery: the retry schedule, Retry-After, signatures."""
from __future__ import annotations

import datetime as dt

import standardwebhooks

from appliance.services.automation import alerts, webhooks

NOW = dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.timezone.utc)


def waits(backoff: str, retries: int) -> list[int | None]:
    found = [webhooks.next_attempt(backoff, retries, attempt, NOW) for attempt in range(1, retries + 2)]
    return [None if when is None else int((when - NOW).total_seconds()) for when in found]


def test_exponential_follows_the_contract_then_exhausts() -> None:
    assert waits("exponential", 7) == [5, 300, 1800, 7200, 18000, 36000, 36000, None]
    assert waits("exponential", 3) == [5, 300, 1800, None]
    assert waits("exponential", 10)[7:] == [36000, 36000, 36000, None]  # past the table: 10 h
    assert waits("exponential", 0) == [None]


def test_fixed_and_immediate() -> None:
    assert waits("fixed", 3) == [300, 300, 300, None]
    assert waits("immediate", 2) == [0, 0, None]


def test_retry_after_wins_and_is_capped() -> None:
    when = webhooks.next_attempt("exponential", 3, 1, NOW, retry_after=120)
    assert when == NOW + dt.timedelta(seconds=120)
    assert webhooks.next_attempt("exponential", 3, 1, NOW, retry_after=10**9) == NOW + dt.timedelta(hours=10)
    assert webhooks.next_attempt("exponential", 3, 4, NOW, retry_after=120) is None  # retries used up
    assert webhooks.parse_retry_after("42", NOW) == 42
    assert webhooks.parse_retry_after("Sun, 06 Dec 2026 02:01:00 GMT", NOW) == 60
    assert webhooks.parse_retry_after("soon", NOW) is None


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    secrets = [alerts.new_secret(), alerts.new_secret()]
    now = dt.datetime.now(dt.timezone.utc)
    event = {"event_id": "evt_1", "type": "message.received", "payload": {"subject": "Grüße"}}
    body = webhooks.body_for(event, now)
    headers = webhooks.headers_for(secrets, "msg_evt_1_alr_1", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in secrets:
        assert standardwebhooks.Webhook(secret).verify(body, headers) == {
            "type": "message.received", "timestamp": webhooks.body_for(event, now).decode().split('"timestamp":"')[1][:20],
            "data": event}
