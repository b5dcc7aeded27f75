"""Issue 22: layered send caps, enforced in the one send path, and the usage endpoints.

Every test runs on SQLite and on PostgreSQL. The concurrency test serves the real WSGI app from two
threaded HTTP servers on one store (two web workers) and fires 30 sends at once over HTTP.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from appliance import clock
from appliance.models import Event, Message, OutboundQueue, SystemMail
from tests.helpers import assert_error
from tests.world import World

TO = [{"email": "someone@example.org"}]


def _mid_hour() -> None:
    """Move the clock to half past the next hour, so no window ends while a test runs."""
    now = clock.utcnow()
    target = now.replace(minute=30, second=0, microsecond=0) + dt.timedelta(hours=1)
    clock.advance(target - now)


def _send(client, auth: dict, to: list[dict] | None = None):
    return client.post("/v1/messages/", json={"to": to or TO, "subject": "hi", "text_body": "hello"}, headers=auth)


def _put_sends(client, owner, level: str, subject_id: str | None, **limits):
    resp = client.put("/v1/billing/caps/sends/", json={"level": level, "id": subject_id, **limits},
                      headers=owner.auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _queued(store, inbox_id: str) -> int:
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(Message).where(
            Message.inbox_id == inbox_id, Message.direction == "outbound", Message.status == "queued"))


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_token_cap_of_10_per_hour_holds_under_30_concurrent_sends(make_app, settings, store, world: World, client):
    """Two web workers, 30 sends at once: exactly 10 queued, 20 answered 429 send_cap_reached
    with Retry-After the seconds until the hour ends and the X-Gentbox-Cap-* headers."""
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "capped@alpha.test")
    _put_sends(client, owner, "token", agent.token_id, per_hour=10)
    servers = [_serve(make_app(settings)) for _ in range(2)]
    urls = [f"http://127.0.0.1:{s.server_port}/v1/messages/" for s, _t in servers]
    barrier = threading.Barrier(30)

    def one(i: int):
        barrier.wait()
        return requests.post(urls[i % 2], json={"to": TO, "subject": f"n{i}", "text_body": "x"},
                             headers=agent.auth, timeout=60)
    try:
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(one, range(30)))
    finally:
        for server, thread in servers:
            server.shutdown()
            thread.join()
    ok = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code == 429]
    assert (len(ok), len(refused)) == (10, 20), [(r.status_code, r.text[:200]) for r in answers]
    end_of_hour = clock.utcnow().replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    for resp in refused:
        assert resp.json()["error"]["code"] == "send_cap_reached"
        expected = (end_of_hour - clock.utcnow()).total_seconds()
        assert expected - 1 <= int(resp.headers["Retry-After"]) <= math.ceil(expected) + 60  # the test's run time
        assert resp.headers["X-Gentbox-Cap-Limit"] == "10" and resp.headers["X-Gentbox-Cap-Remaining"] == "0"
        assert resp.headers["X-Gentbox-Cap-Level"] == "token"
    assert _queued(store, agent.inbox_id) == 10
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(OutboundQueue).where(
            OutboundQueue.inbox_id == agent.inbox_id)) == 10
    caps = client.get("/v1/billing/caps/", headers=owner.auth).get_json()["results"]
    assert [c["used"] for c in caps if c["kind"] == "sends"] == [{"hour": 10}]


def test_each_recipient_counts_and_a_send_over_the_cap_is_refused_whole(client, store, world: World):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "many@alpha.test")
    _put_sends(client, owner, "token", agent.token_id, per_hour=5)
    three = [{"email": f"r{i}@example.org"} for i in range(3)]
    assert _send(client, agent.auth, three).status_code == 201
    err = assert_error(_send(client, agent.auth, three), 429, "send_cap_reached")
    assert "per hour" in err["message"]
    assert _send(client, agent.auth, three[:2]).status_code == 201  # exactly the 2 left
    assert_error(_send(client, agent.auth), 429, "send_cap_reached")
    assert _queued(store, agent.inbox_id) == 2


@pytest.mark.parametrize("level", ["tenant", "inbox"])
def test_the_tenant_and_the_inbox_cap_each_bind_when_lower(client, store, world: World, level):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "layers@alpha.test")
    other = world.agent(owner, agent.inbox_id, ["email:send"])  # a second token of the same inbox
    _put_sends(client, owner, "token", agent.token_id, per_hour=10)
    _put_sends(client, owner, level, owner.tenant_id if level == "tenant" else agent.inbox_id, per_hour=3)
    answers = [_send(client, (agent if i % 2 else other).auth).status_code for i in range(6)]
    assert answers == [201, 201, 201, 429, 429, 429]
    resp = _send(client, agent.auth)
    assert resp.headers["X-Gentbox-Cap-Level"] == level and resp.headers["X-Gentbox-Cap-Limit"] == "3"
    # Lifting the lower cap lets the token's own cap decide again.
    _put_sends(client, owner, level, owner.tenant_id if level == "tenant" else agent.inbox_id, per_hour=None)
    assert _send(client, agent.auth).status_code == 201
    assert _queued(store, agent.inbox_id) == 4


def test_day_and_month_windows_and_retry_after_of_the_longest(client, world: World):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "daily@alpha.test")
    _put_sends(client, owner, "inbox", agent.inbox_id, per_hour=100, per_day=2)
    assert [_send(client, agent.auth).status_code for _ in range(2)] == [201, 201]
    resp = _send(client, agent.auth)
    assert_error(resp, 429, "send_cap_reached")
    now = clock.utcnow()
    end_of_day = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(int(resp.headers["Retry-After"]) - (end_of_day - now).total_seconds()) <= 5
    assert resp.headers["X-Gentbox-Cap-Window"] == "day"


def test_cap_reached_once_at_80_and_once_at_95_per_period(client, store, world: World):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "thresholds@alpha.test")
    _put_sends(client, owner, "token", agent.token_id, per_hour=20, alert_thresholds=[80, 95])
    codes = [_send(client, agent.auth).status_code for _ in range(25)]
    assert codes == [201] * 20 + [429] * 5

    def reached():
        with store.session() as db:
            return [e.payload for e in db.scalars(select(Event).where(Event.type == "cap.reached",
                                                                      Event.tenant_id == owner.tenant_id)
                                                  .order_by(Event.seq))]
    events = reached()
    assert [(e["threshold"], e["used"], e["limit"], e["window"]) for e in events] == [(80, 16, 20, "hour"),
                                                                                     (95, 19, 20, "hour")]
    with store.session() as db:
        mails = db.scalars(select(SystemMail).where(SystemMail.kind == "cap_reached")).all()
        assert len(mails) == 2 and b"is at 80%" in mails[0].raw
    # Setting the same cap again mid-hour announces nothing twice; the next hour is a new period.
    _put_sends(client, owner, "token", agent.token_id, per_hour=20, alert_thresholds=[80, 95])
    assert _send(client, agent.auth).status_code == 429 and len(reached()) == 2
    clock.advance(dt.timedelta(hours=1))
    assert [_send(client, agent.auth).status_code for _ in range(20)] == [201] * 20
    assert [e["threshold"] for e in reached()] == [80, 95, 80, 95]


def test_held_sends_are_capped_when_released(client, store, world: World):
    """An approved send goes through the same caps: the token that asked is charged."""
    _mid_hour()
    owner = world.owner()
    inbox_id = world.inbox(owner, "held@alpha.test")
    world.signing_key("alpha.test")
    agent = world.agent(owner, inbox_id, ["email:send"], requires_approval=["email:send"])
    _put_sends(client, owner, "token", agent.token_id, per_hour=1)
    assert [_send(client, agent.auth).status_code for _ in range(2)] == [202, 202]  # both held
    approvals = client.get("/v1/approvals/", headers=owner.auth).get_json()["results"]
    first, second = sorted(a["approval_id"] for a in approvals)
    assert client.post(f"/v1/approvals/{first}/approve/", headers=owner.auth).status_code == 204
    assert_error(client.post(f"/v1/approvals/{second}/approve/", headers=owner.auth), 429, "send_cap_reached")
    assert _queued(store, inbox_id) == 1


def test_only_an_owner_or_admin_session_changes_caps(client, world: World):
    owner = world.owner()
    agent = world.sender(owner, "rules@alpha.test", scopes=("email:send", "billing:read", "billing:write"))
    body = {"level": "token", "id": agent.token_id, "per_hour": 1000}
    assert_error(client.put("/v1/billing/caps/sends/", json=body, headers=agent.auth), 403, "session_required")
    member = world.member(owner)
    assert_error(client.put("/v1/billing/caps/sends/", json=body, headers=member.auth), 403, "forbidden")
    assert_error(client.get("/v1/billing/caps/", headers=member.auth), 403, "forbidden")
    assert client.get("/v1/billing/caps/", headers=agent.auth).status_code == 200  # billing:read
    reader = world.agent(owner, agent.inbox_id, ["email:read"])
    assert_error(client.get("/v1/billing/usage/", headers=reader.auth), 403, "insufficient_scope")
    # Another tenant's inbox or token is not found, never changed.
    stranger = world.owner()
    assert_error(client.put("/v1/billing/caps/sends/", json=body, headers=stranger.auth), 404, "not_found")
    assert_error(client.put("/v1/billing/caps/mailbox/", json={"inbox_id": agent.inbox_id, "limit_gb": 1},
                            headers=stranger.auth), 404, "not_found")
    assert_error(client.get("/v1/billing/usage/", query_string={"inbox_id": agent.inbox_id},
                            headers=stranger.auth), 404, "not_found")
    assert_error(client.put("/v1/billing/caps/sends/", json={"level": "tenant", "per_hour": -1},
                            headers=owner.auth), 400, "validation_error")
    for path, body in (("mailbox", {"limit_gb": False}), ("spend", {"monthly_limit": True}),
                       ("sends", {"level": "tenant", "per_hour": True}),
                       ("sends", {"level": "tenant", "per_hour": 5, "alert_thresholds": [120]})):
        assert_error(client.put(f"/v1/billing/caps/{path}/", json=body, headers=owner.auth), 400, "validation_error")


def test_operator_default_caps_bind_tenants_without_their_own(settings, make_app, store):
    _mid_hour()
    settings = settings.model_copy(update={"default_tenant_sends_per_hour": 2})
    client = make_app(settings).test_client()
    world = World(store, settings)
    owner = world.owner()
    agent = world.sender(owner, "defaults@alpha.test")
    assert [_send(client, agent.auth).status_code for _ in range(3)] == [201, 201, 429]
    caps = client.get("/v1/billing/caps/", headers=owner.auth).get_json()["results"]
    assert [(c["level"], c["default"], c["per_hour"], c["used"]) for c in caps] == [("tenant", True, 2, {"hour": 2})]
    _put_sends(client, owner, "tenant", None, per_hour=5)  # the tenant's own cap replaces the default
    assert _send(client, agent.auth).status_code == 201


def test_stats_series_by_hour_and_day(client, world: World):
    _mid_hour()
    owner = world.owner()
    agent = world.sender(owner, "stats@alpha.test", scopes=("email:send", "stats:read"))
    for _ in range(3):
        assert _send(client, agent.auth, [{"email": "a@example.org"}, {"email": "b@example.org"}]).status_code == 201
    now = clock.utcnow()
    resp = client.get("/v1/stats/", query_string={"from": (now - dt.timedelta(hours=2)).isoformat(),
                                                  "to": (now + dt.timedelta(hours=1)).isoformat()},
                      headers=agent.auth)
    assert resp.status_code == 200, resp.get_json()
    stats = resp.get_json()
    assert len(stats["times"]) == len(stats["series"]["sends"]) == 4
    assert stats["series"]["sends"] == [0, 0, 6, 0]
    daily = client.get("/v1/stats/", query_string={"interval": "day"}, headers=owner.auth).get_json()
    assert sum(daily["series"]["sends"]) == 6 and len(daily["times"]) in (30, 31)
    assert_error(client.get("/v1/stats/", query_string={"interval": "week"}, headers=owner.auth), 400,
                 "validation_error")


def test_an_enforced_spend_cap_stops_priced_smarthost_sends_and_allow_and_bill_does_not(settings, make_app, store):
    """At 1 unit a send through the smarthost, a monthly spend cap of 2 lets two sends through
    and refuses the third (403 cap_reached, nothing queued); `allow_and_bill` only reports."""
    _mid_hour()
    settings = settings.model_copy(update={"relay_host": "smarthost.example.net",
                                           "price_per_1000_smarthost_sends": 1000.0})
    client = make_app(settings).test_client()
    world = World(store, settings)
    owner = world.owner()
    agent = world.sender(owner, "spender@alpha.test")
    cap = client.put("/v1/billing/caps/spend/", json={"monthly_limit": 2}, headers=owner.auth)
    assert cap.status_code == 200, cap.get_json()
    assert [_send(client, agent.auth).status_code for _ in range(2)] == [201, 201]
    assert_error(_send(client, agent.auth), 403, "cap_reached")
    assert _queued(store, agent.inbox_id) == 2
    usage_now = client.get("/v1/billing/usage/", headers=owner.auth).get_json()
    assert usage_now["spend"] == 2.0 and usage_now["sends"] == 2
    client.put("/v1/billing/caps/spend/", json={"monthly_limit": 2, "mode": "allow_and_bill"}, headers=owner.auth)
    assert _send(client, agent.auth).status_code == 201


def test_stats_windows_past_the_calendar_and_naive_times_are_400_naming_the_field(client, world: World):
    owner = world.owner()
    for query, field in (({"to": "0001-01-01T00:00:00Z"}, "to"), ({"to": "2026-01-02T00:00:00"}, "to"),
                         ({"from": "2026-01-01T00:00:00"}, "from")):
        assert_error(client.get("/v1/stats/", headers=owner.auth, query_string=query), 400, "validation_error", field)
