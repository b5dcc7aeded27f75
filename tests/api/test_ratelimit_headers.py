"""Issue 24 point 6: the IETF RateLimit-Policy/RateLimit headers beside the X-RateLimit-* ones."""
from __future__ import annotations

import re

# draft-ietf-httpapi-ratelimit-headers: a Structured Fields list of "name";q=..;w=.. and "name";r=..;t=..
POLICY = re.compile(r'^"([a-z-]+)";q=(\d+);w=(\d+)$')
CURRENT = re.compile(r'^"([a-z-]+)";r=(\d+);t=(\d+)$')


def _both(resp) -> tuple[str, int, int, int, int]:  # noqa: ANN001
    """The policy name, quota, window, remaining and reset, checked against the X-RateLimit-* values."""
    policy, current = POLICY.match(resp.headers["RateLimit-Policy"]), CURRENT.match(resp.headers["RateLimit"])
    assert policy and current, dict(resp.headers)
    assert policy[1] == current[1]  # the same policy named in both
    quota, window, remaining, reset = int(policy[2]), int(policy[3]), int(current[2]), int(current[3])
    assert quota == int(resp.headers["X-RateLimit-Limit"])
    assert remaining == int(resp.headers["X-RateLimit-Remaining"])
    assert reset == int(resp.headers["X-RateLimit-Reset"]) and 1 <= reset <= window
    return policy[1], quota, window, remaining, reset


def test_a_token_route_sends_both_forms_and_a_429_too(make_settings, make_app, world):
    client = make_app(make_settings(rate_limit_token=3)).test_client()
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    seen = [_both(client.get("/v1/users/me/", headers=agent.auth)) for _ in range(3)]
    assert [s[3] for s in seen] == [2, 1, 0]
    assert {s[:3] for s in seen} == {("agent", 3, 60)}  # the name says the class, never the token id
    limited = client.get("/v1/users/me/", headers=agent.auth)
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    name, quota, window, remaining, reset = _both(limited)
    assert (name, quota, remaining) == ("agent", 3, 0) and reset <= int(limited.headers["Retry-After"])


def test_per_ip_limits_name_their_policy_without_the_address(make_settings, make_app):
    client = make_app(make_settings(rate_limit_ip=2, rate_limit_waitlist=1)).test_client()
    assert _both(client.get("/v1/reference/errors/"))[:4] == ("ip", 2, 60, 1)
    assert _both(client.post("/v1/waitlist/", json={"email": "one@example.com"}))[:4] == ("ip-waitlist", 1, 3600, 0)
    over = client.post("/v1/waitlist/", json={"email": "two@example.com"})
    assert over.status_code == 429 and _both(over)[:4] == ("ip-waitlist", 1, 3600, 0)
    for resp in (client.get("/v1/reference/errors/"), client.get("/v1/reference/errors/")):
        assert "127.0.0.1" not in resp.headers["RateLimit-Policy"] + resp.headers["RateLimit"]
    assert client.get("/v1/reference/errors/").status_code == 429
