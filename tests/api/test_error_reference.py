"""Issue 24 point 2: every error code has a fix and a docs anchor, and every error body carries both."""
from __future__ import annotations

from html.parser import HTMLParser

from appliance.errors import ERROR_CODES, ERROR_FIXES


class _Ids(HTMLParser):
    """Collects every id attribute of a page: the anchors a docs_url fragment can point at."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        self.ids.update(value for name, value in attrs if name == "id" and value)


def _anchors(client, path: str) -> set[str]:  # noqa: ANN001
    resp = client.get(path)
    assert resp.status_code == 200 and resp.mimetype == "text/html", (path, resp.status_code)
    parser = _Ids()
    parser.feed(resp.get_data(as_text=True))
    return parser.ids


def test_every_code_in_the_catalogue_has_a_fix_and_a_served_anchor(client):
    resp = client.get("/v1/reference/errors/")
    assert resp.status_code == 200
    rows = {row["code"]: row for row in resp.json["results"]}
    assert set(rows) == set(ERROR_CODES) == set(ERROR_FIXES)
    pages: dict[str, set[str]] = {}
    for code, row in rows.items():
        assert isinstance(row["fix"], str) and len(row["fix"]) > 10, code
        path, _, fragment = row["docs_url"].partition("#")
        assert fragment == code, row
        if path not in pages:
            pages[path] = _anchors(client, path)
        assert code in pages[path], f"{row['docs_url']} names no anchor on the served page"


def _error(resp, status: int, code: str) -> dict:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    error = resp.get_json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["fix"], str) and error["fix"], error
    assert error["docs_url"] == f"/docs/errors/#{code}", error
    return error


def test_real_errors_carry_fix_and_docs_url(client, world):
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read"])
    _error(client.get("/v1/users/me/"), 401, "unauthenticated")
    _error(client.get("/v1/users/me/", headers={"Authorization": "Bearer gent_nope"}), 401, "unauthenticated")
    scope = _error(client.post("/v1/messages/", json={}, headers=agent.auth), 403, "insufficient_scope")
    assert "email:send" in scope["fix"]  # the site's own fix is kept
    _error(client.get("/v1/tokens/", headers=agent.auth), 403, "session_required")
    missing = _error(client.get("/v1/no-such-thing/"), 404, "not_found")
    assert missing["fix"] == "See GET /v1/openapi.json for every path."  # the site's own, not the default
    _error(client.get(f"/v1/messages/msg_{'0' * 26}/", headers=agent.auth), 404, "not_found")
    invalid = _error(client.get("/v1/events/", query_string={"limit": 0}, headers=agent.auth),
                     400, "validation_error")
    assert invalid["field"] == "limit"
    _error(client.post("/v1/waitlist/", json={"email": "not an address"}), 400, "validation_error")
    key = {"Idempotency-Key": "err-ref-1"}
    assert client.post("/v1/waitlist/", json={"email": "a@example.com"}, headers=key).status_code == 202
    _error(client.post("/v1/waitlist/", json={"email": "b@example.com"}, headers=key), 409, "idempotency_conflict")
    _error(client.delete("/v1/waitlist/"), 405, "method_not_allowed")
    _error(client.post("/v1/waitlist/", data="x", content_type="text/plain"), 415, "unsupported_media_type")
