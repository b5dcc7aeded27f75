"""Every route's declared auth marker is enforced, walked from the app's URL map (no hand list).

For each rule of `app.url_map` the declaration in `REGISTRY` says public, user auth, any token or
scope: X. The walk calls the route with no token, with a session token and with one agent token
per scope, and holds each answer to the contract's rules for that marker. A route that is not
declared (so its auth is unknown) fails the walk.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from api.framework import REGISTRY
from appliance.services.identity.auth import SCOPES
from tests.world import Agent, Person, World

WRITE_METHODS = {"POST", "PUT", "PATCH"}
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # added by Flask to every rule, answered without a view
ID_PREFIXES = {"user": "usr", "domain": "dom", "inbox": "inb", "token": "tok", "message": "msg",
               "thread": "thr", "attachment": "att", "label": "lbl", "contact": "ctc", "event": "evt",
               "calendar": "cal", "task": "tsk", "approval": "apr", "webhook": "whk", "note": "not"}


@dataclass
class Cast:
    """The callers and resources of one walk."""

    world: World
    owner: Person
    agents: dict[str, Agent]  # scope -> a token holding only that scope
    path_values: dict[str, str]  # for the session token
    agent_values: dict[str, str]  # for agent tokens: their own inbox (another one is inbox_mismatch)

    def session(self, client) -> Person:  # noqa: ANN001
        """The owner's session, logged in again if a route (logout) ended it."""
        if client.get("/v1/users/me/", headers=self.owner.auth).status_code == 401:
            self.owner = self.world.login(self.owner.email)
        return self.owner


def _cast(world: World) -> Cast:
    owner = world.owner()
    agents_inbox = world.inbox(owner)
    agents = {scope: world.agent(owner, agents_inbox, [scope]) for scope in SCOPES}
    # Path parameters point at resources of the owner's tenant that are not the agents' own, so a
    # DELETE walked with the session token (a domain, an inbox, a token) cannot revoke them.
    target_inbox = world.inbox(owner, f"target@target-{owner.tenant_id[-8:].lower()}.example.com")
    target_token = world.agent(owner, target_inbox, ["email:read"])
    values = {"inbox_id": target_inbox, "token_id": target_token.token_id,
              "name": f"target-{owner.tenant_id[-8:].lower()}.example.com"}
    return Cast(world, owner, agents, values, {**values, "inbox_id": agents_inbox})


def _fill(rule: str, values: dict[str, str]) -> str:
    """The rule with each <param> replaced by a plausible value."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        stem = name.removesuffix("_id")
        return f"{ID_PREFIXES.get(stem, stem[:3])}_01J00000000000000000000000" if name.endswith("_id") else "x1"
    return re.sub(r"<(?:\w+:)?(\w+)>", value, rule)


def _call(client, method: str, path: str, headers: dict | None = None):  # noqa: ANN001
    kwargs = {"json": {}} if method in WRITE_METHODS else {}
    return client.open(path, method=method, headers=headers or {}, **kwargs)


def _error_code(resp) -> str | None:  # noqa: ANN001
    body = resp.get_json(silent=True) or {}
    return (body.get("error") or {}).get("code")


def _routes(app) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(endpoint, method, rule) for every rule of the URL map except Flask's static files and the
    web UI's pages (cookie sessions, not tokens: tests/webui/ walks those)."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("webui."):
            continue
        for method in sorted(rule.methods - AUTOMATIC_METHODS):
            out.append((rule.endpoint, method, rule.rule))
    return out


def test_every_route_is_declared(app):
    routes = _routes(app)
    assert len(routes) >= 10, routes
    undeclared = [f"{method} {rule} ({endpoint})" for endpoint, method, rule in routes if endpoint not in REGISTRY]
    assert not undeclared, f"routes without an auth declaration: {undeclared}"
    for endpoint, method, rule in routes:
        spec = REGISTRY[endpoint]
        assert (spec.method, spec.rule) == (method, rule), f"{endpoint} is declared as {spec.method} {spec.rule}"
        assert spec.auth.kind in ("public", "user", "any", "scope"), spec
        if spec.auth.kind == "scope":  # a misspelt scope would lock every token out
            assert spec.auth.scope in SCOPES, f"{endpoint} needs the unknown scope {spec.auth.scope}"


def test_every_route_enforces_its_declared_auth(app, client, world):
    cast = _cast(world)
    problems: list[str] = []

    def expect(ok: bool, what: str, resp) -> None:  # noqa: ANN001
        if resp.status_code >= 500:
            problems.append(f"{what}: server error {resp.status_code} {resp.get_data(as_text=True)[:200]}")
        elif not ok:
            problems.append(f"{what}: got {resp.status_code} {resp.get_data(as_text=True)[:200]}")

    walked = 0
    for endpoint, method, rule in _routes(app):
        spec = REGISTRY.get(endpoint)
        if spec is None:
            problems.append(f"{method} {rule}: not in REGISTRY, so its auth is undeclared")
            continue
        walked += 1
        path = _fill(rule, cast.path_values)
        label = f"{method} {path} [{spec.auth.describe()}]"
        kind = spec.auth.kind

        resp = _call(client, method, path)
        if kind == "public":
            expect(resp.status_code not in (401, 403), f"{label} without a token", resp)
        else:
            expect(resp.status_code == 401 and _error_code(resp) == "unauthenticated",
                   f"{label} without a token should be 401 unauthenticated", resp)

        for scope, agent in cast.agents.items():
            resp = _call(client, method, _fill(rule, cast.agent_values), agent.auth)
            who = f"{label} with an agent token holding only {scope}"
            if kind == "user":
                expect(resp.status_code == 403 and _error_code(resp) == "session_required",
                       f"{who} should be 403 session_required", resp)
            elif kind == "scope" and scope not in (spec.auth.scope, *spec.auth.also):
                fix = ((resp.get_json(silent=True) or {}).get("error") or {}).get("fix") or ""
                expect(resp.status_code == 403 and _error_code(resp) == "insufficient_scope"
                       and spec.auth.scope in fix,
                       f"{who} should be 403 insufficient_scope naming {spec.auth.scope} in fix", resp)
            else:  # public, any token, or the scope the route needs
                expect(resp.status_code not in (401, 403), f"{who} should pass auth", resp)

        owner = cast.session(client)
        resp = _call(client, method, path, owner.auth)
        expect(resp.status_code not in (401, 403), f"{label} with the owner's session token should pass auth",
               resp)

    assert not problems, "\n".join(problems)
    assert walked >= 10
    # The walk left the agents' tokens working: nothing above may have revoked them on the side.
    for scope, agent in cast.agents.items():
        assert client.get("/v1/users/me/", headers=agent.auth).status_code == 200, scope


def _all_events(client, agent: Agent) -> list[dict]:  # noqa: ANN001
    """Every event an agent token can page through."""
    seen, after = [], None
    while True:
        resp = client.get("/v1/events/", query_string={"limit": 2, **({"after": after} if after else {})},
                          headers=agent.auth)
        assert resp.status_code == 200, resp.json
        seen += resp.json["results"]
        after = resp.json["cursor"]
        if after is None:
            return seen


def test_an_agent_token_never_reaches_another_inboxs_events(client, world):
    owner = world.owner()
    inbox_a, inbox_b = world.inbox(owner), world.inbox(owner)  # same tenant: the harder case
    reader_a = world.agent(owner, inbox_a, ["email:read"])
    for _ in range(3):
        world.agent(owner, inbox_a, ["email:send"])  # more token.created events on inbox A
    reader_b = world.agent(owner, inbox_b, ["email:read"])
    stranger = world.owner()
    world.agent(stranger, world.inbox(stranger), ["email:read"])

    events_a = _all_events(client, reader_a)
    assert len(events_a) == 5 and {e["inbox_id"] for e in events_a} == {inbox_a}  # inbox.created, 4 tokens
    events_b = _all_events(client, reader_b)
    assert events_b and {e["inbox_id"] for e in events_b} == {inbox_b}
    assert not {e["event_id"] for e in events_a} & {e["event_id"] for e in events_b}

    # A cursor taken from inbox A's pages shows inbox B nothing of A either.
    resp = client.get("/v1/events/", query_string={"after": "evt_" + "0" * 26}, headers=reader_b.auth)
    assert resp.status_code == 200 and {e["inbox_id"] for e in resp.json["results"]} == {inbox_b}

    for inbox_id in (inbox_a, "inb_01J00000000000000000000000"):
        resp = client.get("/v1/events/", query_string={"inbox_id": inbox_id}, headers=reader_b.auth)
        assert resp.status_code == 403, resp.json
        assert resp.json["error"]["code"] == "inbox_mismatch"
        assert resp.json["request_id"] == resp.headers["X-Request-Id"]
    # Naming its own inbox is allowed.
    resp = client.get("/v1/events/", query_string={"inbox_id": inbox_b}, headers=reader_b.auth)
    assert resp.status_code == 200 and {e["inbox_id"] for e in resp.json["results"]} == {inbox_b}


def test_another_tenants_resources_are_not_found(client, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    token = world.agent(owner, inbox, ["email:read"])
    other = world.owner()
    world.inbox(other)

    def not_found(resp) -> None:  # noqa: ANN001
        assert resp.status_code == 404, (resp.status_code, resp.get_json())
        assert resp.json["error"]["code"] == "not_found"

    not_found(client.get("/v1/events/", query_string={"inbox_id": inbox}, headers=other.auth))
    not_found(client.get("/v1/tokens/", query_string={"inbox_id": inbox}, headers=other.auth))
    not_found(client.patch(f"/v1/tokens/{token.token_id}/", json={"action": "pause"}, headers=other.auth))
    not_found(client.patch(f"/v1/tokens/{token.token_id}/", json={"action": "rotate"}, headers=other.auth))
    not_found(client.delete(f"/v1/tokens/{token.token_id}/", headers=other.auth))
    not_found(client.post("/v1/tokens/", json={"inbox_id": inbox, "label": "x", "scopes": ["email:read"]},
                          headers=other.auth))
    listed = client.get("/v1/tokens/", headers=other.auth)
    assert listed.status_code == 200 and listed.json["results"] == []
    # The owner's token was neither paused, rotated nor revoked, and no token was added to its inbox.
    assert client.get("/v1/users/me/", headers=token.auth).status_code == 200
    mine = client.get("/v1/tokens/", query_string={"inbox_id": inbox}, headers=owner.auth)
    assert [t["token_id"] for t in mine.json["results"]] == [token.token_id]
    assert mine.json["results"][0]["status"] == "active"


def test_a_member_session_cannot_act_for_an_inbox(client, world):
    """scope: X admits a session of the inbox's owner or admin, not a plain member without a grant
    (to whom the inbox is not found: issue 14.15)."""
    owner = world.owner()
    inbox = world.inbox(owner)
    member, admin = world.member(owner), world.member(owner, role="admin")
    resp = client.get("/v1/events/", query_string={"inbox_id": inbox}, headers=member.auth)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    resp = client.get("/v1/events/", query_string={"inbox_id": inbox}, headers=admin.auth)
    assert resp.status_code == 200
    resp = client.post("/v1/tokens/", json={"inbox_id": inbox, "scopes": ["email:read"]}, headers=member.auth)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
