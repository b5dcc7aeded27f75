"""The contract's section 0 conventions: rate limits, idempotency, request ids, errors, OpenAPI."""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from pathlib import Path

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.framework import REGISTRY
from appliance import clock
from appliance.errors import ERROR_CODES, ERROR_FIXES, GentError
from appliance.models import IdempotencyRecord, UserSession, WaitlistEntry
from appliance.services import idempotency
from tests.world import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _assert_error(resp, status: int, code: str) -> dict:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error", "request_id"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["fix"], str) and body["error"]["fix"], body
    assert body["error"]["docs_url"] == f"/docs/errors/#{code}", body
    assert body["request_id"] == resp.headers["X-Request-Id"] and body["request_id"].startswith("req_")
    return body


def _rate(resp) -> tuple[int, int, int]:  # noqa: ANN001
    missing = [h for h in RATE_HEADERS if h not in resp.headers]
    assert not missing, f"{resp.status_code} answer lacks {missing}"
    return tuple(int(resp.headers[h]) for h in RATE_HEADERS)


# --- rate limits ----------------------------------------------------------------------------------
def test_every_kind_of_answer_carries_rate_limit_headers(client, world):
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    answers = {
        "public 200": client.get("/v1/reference/errors/"),
        "public 202": client.post("/v1/waitlist/", json={"email": "someone@example.com"}),
        "public 400": client.post("/v1/waitlist/", json={"email": "not an address"}),
        "login 401": client.post("/auth/login/", json={"email": owner.email, "password": "wrong password"}),
        "token 200": client.get("/v1/users/me/", headers=agent.auth),
        "session 200": client.get("/v1/tokens/", headers=owner.auth),
        "no token 401": client.get("/v1/users/me/"),
        "bad token 401": client.get("/v1/users/me/", headers={"Authorization": "Bearer gent_nope"}),
        "malformed auth 401": client.get("/v1/users/me/", headers={"Authorization": "Basic eDp5"}),
        "scope 403": client.get("/v1/tokens/", headers=agent.auth),
        "validation 400": client.get("/v1/events/", query_string={"limit": 0}, headers=agent.auth),
        "unknown path 404": client.get("/v1/no-such-thing/"),
        "wrong method 405": client.delete("/v1/waitlist/"),
        "media type 415": client.post("/v1/waitlist/", data="x", content_type="text/plain"),
    }
    for what, resp in answers.items():
        limit, remaining, reset = _rate(resp)
        assert limit > 0 and 0 <= remaining <= limit and 1 <= reset <= 3600, (what, limit, remaining, reset)


def test_remaining_counts_down_per_token(make_settings, make_app, world):
    app = make_app(make_settings(rate_limit_token=50))
    client = app.test_client()
    owner = world.owner()
    inbox = world.inbox(owner)
    one, two = world.agent(owner, inbox, ["email:read"]), world.agent(owner, inbox, ["email:read"])
    minute = time.time() // 60
    seen = [_rate(client.get("/v1/users/me/", headers=one.auth))[1] for _ in range(3)]
    if time.time() // 60 != minute:  # the calls straddled a window's end: its counter began again
        seen = [_rate(client.get("/v1/users/me/", headers=one.auth))[1] for _ in range(3)]
    assert seen[1:] == [seen[0] - 1, seen[0] - 2] and 47 <= seen[0] <= 49  # 49 unless the window turned
    assert _rate(client.get("/v1/users/me/", headers=two.auth))[:2] == (50, 49)  # its own counter


def test_over_the_token_limit_is_429_with_retry_after(make_settings, make_app, world):
    app = make_app(make_settings(rate_limit_token=3))
    client = app.test_client()
    owner = world.owner()
    inbox = world.inbox(owner)
    agent, other = world.agent(owner, inbox, ["email:read"]), world.agent(owner, inbox, ["email:read"])
    for _ in range(3):
        assert client.get("/v1/users/me/", headers=agent.auth).status_code == 200
    resp = client.get("/v1/users/me/", headers=agent.auth)
    _assert_error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert _rate(resp)[:2] == (3, 0)
    assert client.get("/v1/users/me/", headers=other.auth).status_code == 200  # per token


def test_over_the_ip_limit_is_429_per_client_ip(make_settings, make_app):
    app = make_app(make_settings(rate_limit_ip=4))
    client = app.test_client()
    here, there = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "198.51.100.8"}
    for _ in range(4):
        assert client.get("/v1/reference/errors/", environ_base=here).status_code == 200
    _assert_error(client.get("/v1/reference/errors/", environ_base=here), 429, "rate_limited")
    # Probing unknown paths or calling without a token counts against the same IP.
    _assert_error(client.get("/v1/nothing-here/", environ_base=here), 429, "rate_limited")
    _assert_error(client.get("/v1/users/me/", environ_base=here), 429, "rate_limited")
    assert client.get("/v1/reference/errors/", environ_base=there).status_code == 200


def test_the_waitlist_has_its_own_stricter_limit(make_settings, make_app):
    app = make_app(make_settings(rate_limit_waitlist=2))
    client = app.test_client()
    for n in range(2):
        assert client.post("/v1/waitlist/", json={"email": f"a{n}@example.com"}).status_code == 202
    resp = client.post("/v1/waitlist/", json={"email": "a9@example.com"})
    _assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    assert client.get("/v1/reference/errors/").status_code == 200  # other public routes still answer


def test_rate_counters_hold_across_processes(make_settings, make_app, world):
    """Two apps on one store stand for two gunicorn workers: they share every counter."""
    settings = make_settings(rate_limit_token=4, rate_limit_ip=4)
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    remaining = []
    for client in (first, second, first, second):
        resp = client.get("/v1/users/me/", headers=agent.auth)
        assert resp.status_code == 200
        remaining.append(_rate(resp)[1])
    assert remaining == [3, 2, 1, 0]
    _assert_error(first.get("/v1/users/me/", headers=agent.auth), 429, "rate_limited")
    _assert_error(second.get("/v1/users/me/", headers=agent.auth), 429, "rate_limited")
    # And per IP, for public routes.
    for client in (second, first, second, first):
        assert client.get("/v1/openapi.json").status_code == 200
    _assert_error(second.get("/v1/openapi.json"), 429, "rate_limited")
    _assert_error(first.get("/v1/openapi.json"), 429, "rate_limited")


# --- idempotency ----------------------------------------------------------------------------------
def test_waitlist_idempotency_key_replays_and_does_nothing_twice(client, store):
    key = {"Idempotency-Key": "wl-0001"}
    first = client.post("/v1/waitlist/", json={"email": "once@example.com"}, headers=key)
    assert first.status_code == 202 and "Idempotency-Replayed" not in first.headers
    again = client.post("/v1/waitlist/", json={"email": "once@example.com"}, headers=key)
    assert again.status_code == 202 and again.get_data() == first.get_data()
    assert again.headers["Idempotency-Replayed"] == "true"
    with store.sessions() as db:
        entry = db.scalar(select(WaitlistEntry).where(WaitlistEntry.email == "once@example.com"))
        assert entry.request_count == 1  # the replay did not run the request again
    other = client.post("/v1/waitlist/", json={"email": "twice@example.com"}, headers=key)
    body = _assert_error(other, 409, "idempotency_conflict")
    assert body["error"]["field"] == "Idempotency-Key"
    with store.sessions() as db:
        assert db.scalar(select(func.count()).select_from(WaitlistEntry)
                         .where(WaitlistEntry.email == "twice@example.com")) == 0
    # Keys belong to their caller: another client IP may use the same key for its own request.
    elsewhere = client.post("/v1/waitlist/", json={"email": "twice@example.com"}, headers=key,
                            environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert elsewhere.status_code == 202 and "Idempotency-Replayed" not in elsewhere.headers


def test_login_idempotency_key_replays_one_session(client, world, store):
    owner = world.owner()
    body = {"email": owner.email, "password": PASSWORD}
    key = {"Idempotency-Key": "login-7"}
    with store.sessions() as db:
        sessions_before = db.scalar(select(func.count()).select_from(UserSession))
    first = client.post("/auth/login/", json=body, headers=key)
    second = client.post("/auth/login/", json=body, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json == second.json and second.headers["Idempotency-Replayed"] == "true"
    with store.sessions() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == sessions_before + 1
    _assert_error(client.post("/auth/login/", json={**body, "password": "another one"}, headers=key),
                  409, "idempotency_conflict")
    # A failed call is not stored: the key stays free for a corrected retry.
    bad_key = {"Idempotency-Key": "login-8"}
    assert client.post("/auth/login/", json={**body, "password": "nope"}, headers=bad_key).status_code == 401
    assert client.post("/auth/login/", json=body, headers=bad_key).status_code == 200


def test_an_idempotency_key_expires_after_a_day(client):
    key = {"Idempotency-Key": "wl-expiring"}
    assert client.post("/v1/waitlist/", json={"email": "day1@example.com"}, headers=key).status_code == 202
    clock.advance(dt.timedelta(hours=25))
    resp = client.post("/v1/waitlist/", json={"email": "day2@example.com"}, headers=key)
    assert resp.status_code == 202 and "Idempotency-Replayed" not in resp.headers
    again = client.post("/v1/waitlist/", json={"email": "day2@example.com"}, headers=key)
    assert again.headers.get("Idempotency-Replayed") == "true"


def test_bad_idempotency_keys_are_refused(client):
    for key in ("", "x" * 201):
        resp = client.post("/v1/waitlist/", json={"email": "k@example.com"}, headers={"Idempotency-Key": key})
        _assert_error(resp, 400, "validation_error")


def test_a_live_idempotency_record_is_never_replaced(store, settings):
    """Two requests with one key racing: the second to commit must fail, and then replays the first."""
    with store.session() as db:
        idempotency.save(db, settings.secret_key, "ip:192.0.2.1", "race", "hash", 202, {"status": "pending"})
    with pytest.raises(IntegrityError):
        with store.session() as db:
            idempotency.save(db, settings.secret_key, "ip:192.0.2.1", "race", "hash", 202, {"status": "second"})
    with store.sessions() as db:
        assert idempotency.find(db, settings.secret_key, "ip:192.0.2.1", "race", "hash").body == {"status": "pending"}
        assert db.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1


# --- request ids, errors --------------------------------------------------------------------------
def test_the_request_id_header_matches_the_body(client):
    ids = set()
    for resp in (client.get("/v1/users/me/"), client.post("/v1/waitlist/", json={}),
                 client.get("/nowhere/"), client.put("/v1/waitlist/", json={})):
        ids.add(_assert_error(resp, resp.status_code, resp.get_json()["error"]["code"])["request_id"])
    ok = client.get("/v1/reference/errors/")
    assert ok.headers["X-Request-Id"].startswith("req_")
    ids.add(ok.headers["X-Request-Id"])
    assert len(ids) == 5  # one per request


def test_unknown_paths_and_methods_answer_json(client):
    for path in ("/v1/nope/", "/nope", "/v1/waitlist/extra/", "/v1/tokens/a/b/c/"):
        _assert_error(client.get(path), 404, "not_found")
    resp = client.delete("/v1/waitlist/")
    _assert_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    _assert_error(client.post("/v1/users/me/", json={}), 405, "method_not_allowed")
    _assert_error(client.open("/v1/tokens/", method="PUT", json={}), 405, "method_not_allowed")


def test_a_path_without_its_trailing_slash_redirects_in_json(client):
    resp = client.post("/v1/waitlist", json={"email": "slash@example.com"})
    assert resp.status_code == 308 and resp.headers["Location"].endswith("/v1/waitlist/")
    assert resp.mimetype == "application/json" and resp.get_json()["location"].endswith("/v1/waitlist/")
    _rate(resp)


def test_the_error_reference_lists_every_code(client):
    resp = client.get("/v1/reference/errors/")
    assert resp.status_code == 200
    listed = {row["code"]: row for row in resp.json["results"]}
    assert set(listed) == set(ERROR_CODES)
    for code, (status, meaning) in ERROR_CODES.items():
        assert listed[code]["status"] == status and listed[code]["meaning"] == meaning
    # The contract's status for each documented code.
    contract = {400: {"validation_error", "invalid_request"},
                401: {"unauthenticated", "token_expired", "token_revoked"},
                403: {"forbidden", "insufficient_scope", "session_required", "inbox_mismatch"}, 404: {"not_found"},
                409: {"conflict", "idempotency_conflict", "domain_in_use"}, 413: {"payload_too_large"},
                415: {"unsupported_media_type"}, 429: {"rate_limited"}, 500: {"internal_error"},
                503: {"unavailable"}}
    for status, codes in contract.items():
        for code in codes:
            assert ERROR_CODES[code][0] == status, code


def _codes_in_source() -> dict[str, str]:
    """Every error code the code base can raise: class defaults and code="..." arguments."""
    found: dict[str, str] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            found.setdefault(sub.code, f"class {sub.__name__}")
            walk(sub)
    walk(GentError)
    pattern = re.compile(r"""\bcode\s*=\s*["']([a-z_]+)["']""")
    for folder in ("api", "appliance", "smtp", "webui"):
        for path in (ROOT / folder).rglob("*.py"):
            for code in pattern.findall(path.read_text(encoding="utf-8")):
                found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def test_every_raised_error_code_is_documented():
    found = _codes_in_source()
    assert {"insufficient_scope", "session_required", "idempotency_conflict"} <= set(found)
    undocumented = {code: where for code, where in found.items() if code not in ERROR_CODES}
    assert not undocumented, f"codes missing from appliance.errors.ERROR_CODES: {undocumented}"
    for cls in GentError.__subclasses__():
        assert ERROR_CODES[cls.code][0] == cls.status, cls


def test_an_unexpected_exception_is_a_generic_500(make_settings, make_app, caplog):
    app = make_app(make_settings())

    def explode():  # noqa: ANN202
        raise RuntimeError("secret detail: password=hunter2")
    app.add_url_rule("/v1/test-explode/", "test_explode", explode, methods=["GET", "POST"])
    client = app.test_client()
    caplog.set_level(logging.ERROR, logger="gentbox.web")
    for resp in (client.get("/v1/test-explode/"), client.post("/v1/test-explode/", json={"a": 1})):
        body = _assert_error(resp, 500, "internal_error")
        text = resp.get_data(as_text=True)
        assert "secret detail" not in text and "hunter2" not in text and "Traceback" not in text
        assert "RuntimeError" not in text and "explode" not in text
        assert set(body["error"]) == {"code", "message", "fix", "docs_url"}
        assert body["error"]["fix"] == ERROR_FIXES["internal_error"]  # the generic fix, no details
        # Logged, with the request id, for the operator.
        logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
        assert logged and logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])


# --- the OpenAPI document -------------------------------------------------------------------------
def test_the_openapi_document_is_valid_31_and_lists_every_route(app, client):
    resp = client.get("/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.1.")
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert not errors, "\n".join(errors[:20])
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    declared = {(spec.method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", spec.rule)) for spec in REGISTRY.values()}
    assert declared <= operations, declared - operations
    routed = {(method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
              for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.startswith("webui.")  # web UI: HTML pages
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == operations, routed ^ operations
    # Every operation: an id, its auth, the shared error answers, and a schema for each path parameter.
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["operationId"] and op["x-auth"], (method, path)
            assert {"400", "401", "404", "429", "500"} <= set(op["responses"]), (method, path)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (method, path)
    reference = client.get("/v1/reference/api/")  # the whole contract's index (issue 24)
    assert reference.status_code == 200 and reference.get_json()["openapi"] == "/v1/openapi.json"
