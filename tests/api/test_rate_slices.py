"""Issue 26 point 3: the per-token limit reserves hits in slices (appliance/services/ratelimit.py
Budgets): a busy token writes the shared counter once per slice, never more than the limit is
admitted across processes, and at most (P - 1) * (SLICE_MAX - 1) hits are lost to P processes."""
from __future__ import annotations

import itertools
import random
import types

import pytest
from sqlalchemy import event

from appliance.errors import RateLimitedError
from appliance.services import ratelimit

WINDOW_START = 1_800_000_000  # a minute's start: every call below falls in the same window


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counters' clock stops one second into a window, so no window ends between calls."""
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: WINDOW_START + 1.0))


def _counter_writes(app) -> list[str]:  # noqa: ANN001
    """The statements that write rate_counters through this app's store, as they run."""
    seen: list[str] = []

    @event.listens_for(app.extensions["gentbox"].counters_engine, "before_cursor_execute")
    def _note(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and "rate_counters" in statement:
            seen.append(statement)
    return seen


def _remaining(resp) -> int:  # noqa: ANN001
    return int(resp.headers["X-RateLimit-Remaining"])


def test_a_busy_token_writes_its_counter_once_per_slice(make_settings, make_app, world, frozen) -> None:
    app = make_app(make_settings(rate_limit_token=1200))
    writes = _counter_writes(app)
    client = app.test_client()
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    answers = [client.get("/v1/users/me/", headers=agent.auth) for _ in range(64)]
    assert [a.status_code for a in answers] == [200] * 64
    assert [_remaining(a) for a in answers] == list(range(1199, 1135, -1))  # exact in one process
    assert len(writes) == 64 // ratelimit.SLICE_MAX  # before: one write per call (64)


def test_a_full_window_refuses_without_writing(make_settings, make_app, world, frozen) -> None:
    app = make_app(make_settings(rate_limit_token=40))
    writes = _counter_writes(app)
    client = app.test_client()
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    assert all(client.get("/v1/users/me/", headers=agent.auth).status_code == 200 for _ in range(40))
    refused = client.get("/v1/users/me/", headers=agent.auth)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert (_remaining(refused), int(refused.headers["X-RateLimit-Limit"])) == (0, 40)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    written = len(writes)
    for _ in range(5):
        assert client.get("/v1/users/me/", headers=agent.auth).status_code == 429
    assert len(writes) == written  # the window is known full: no store write per refusal


def test_two_apps_admit_at_most_the_limit_and_lose_at_most_one_slice(make_settings, make_app, world,
                                                                     frozen) -> None:
    """Two apps on one store stand for two gunicorn workers (or two nodes) sharing the counter."""
    limit = 300
    settings = make_settings(rate_limit_token=limit)
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    admitted = 0
    for client in itertools.islice(itertools.cycle((first, first, first, second)), limit + 50):
        status = client.get("/v1/users/me/", headers=agent.auth).status_code
        assert status in (200, 429)
        admitted += status == 200
    assert limit - (ratelimit.SLICE_MAX - 1) <= admitted <= limit
    assert first.get("/v1/users/me/", headers=agent.auth).status_code == 429
    assert second.get("/v1/users/me/", headers=agent.auth).status_code == 429


@pytest.mark.parametrize("processes,limit", [(4, 1200), (3, 100), (5, 20)])
def test_many_processes_never_exceed_the_limit(store, processes: int, limit: int) -> None:
    """Budgets of several processes taking hits in a random order against one shared counter."""
    budgets = [ratelimit.Budgets() for _ in range(processes)]
    rng = random.Random(processes * limit)
    now = WINDOW_START + 5.0
    admitted = 0
    with store.counter_sessions() as counters:
        for _ in range(limit * 2):
            try:
                rng.choice(budgets).take(counters, "agent:tok_slices", limit, 60, now=now)
                admitted += 1
            except RateLimitedError as exc:
                assert exc.headers["X-RateLimit-Remaining"] == "0"
    assert limit - (processes - 1) * (ratelimit.SLICE_MAX - 1) <= admitted <= limit
    with store.counter_sessions() as counters:  # every process now refuses
        for each in budgets:
            with pytest.raises(RateLimitedError):
                each.take(counters, "agent:tok_slices", limit, 60, now=now)


def test_a_new_window_starts_a_new_budget(store) -> None:
    budget = ratelimit.Budgets()
    with store.counter_sessions() as counters:
        for _ in range(3):
            budget.take(counters, "agent:tok_windows", 3, 60, now=WINDOW_START + 1)
        with pytest.raises(RateLimitedError):
            budget.take(counters, "agent:tok_windows", 3, 60, now=WINDOW_START + 59)
        state = budget.take(counters, "agent:tok_windows", 3, 60, now=WINDOW_START + 61)
    assert (state.remaining, state.reset) == (2, 59)
