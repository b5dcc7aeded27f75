"""Issue 24 point 5: the gentbox-client package, tested against the live OpenAPI document and the
live app (through httpx's WSGI transport: the real Flask app, no mock)."""
from __future__ import annotations

import re

import httpx
import pytest

from api import references
from tests.client_package import GentboxClient, GentboxError
from tests.world import PASSWORD


def _documented(client) -> set[tuple[str, str]]:
    doc = client.get("/v1/openapi.json").get_json()
    return {(method.upper(), re.sub(r"\{\w+\}", "{}", path)) for path, item in doc["paths"].items()
            for method in item}


def test_every_client_method_names_an_operation_of_the_live_document(client):
    documented = _documented(client)
    missing = []
    for name, (method, path) in GentboxClient.OPERATIONS.items():
        paths = ([path.replace("{resource}", r) for r in references.resources()] if "{resource}" in path
                 else [path])
        missing += [(name, method, p) for p in paths if (method, re.sub(r"\{\w+\}", "{}", p)) not in documented]
    assert not missing, f"client methods whose operation the API does not serve: {missing}"


def test_the_check_fails_for_a_path_the_document_lacks(client, monkeypatch):
    monkeypatch.setitem(GentboxClient.OPERATIONS, "ghost", ("GET", "/v1/ghosts/{ghost_id}/"))
    documented = _documented(client)
    assert ("GET", "/v1/ghosts/{}/") not in documented


@pytest.fixture
def gentbox(app):
    def make(token: str | None) -> GentboxClient:
        return GentboxClient("http://gentbox.test", token, transport=httpx.WSGITransport(app=app))
    return make


def test_the_client_sends_reads_and_reports_errors_with_code_and_fix(gentbox, world):
    owner = world.owner()
    agent = world.sender(owner, scopes=("email:send", "email:read", "email:write"))
    with gentbox(agent.raw) as gb:
        me = gb.me()
        assert me["inbox_id"] == agent.inbox_id and me["next_step"]["path"] == "/v1/messages/"
        sent = gb.send_message(to=[{"email": "peer@example.net"}], cc=[{"email": "cc@example.net"}],
                               subject="Hello", text_body="Hi.",
                               attachments=[{"filename": "a.txt", "content_type": "text/plain",
                                             "content_base64": "aGVsbG8="}])
        assert sent["status"] == "queued"
        full = gb.get_message(sent["message_id"])
        assert [a["filename"] for a in full["attachments"]] == ["a.txt"]
        assert [m["message_id"] for m in gb.list_messages(direction="outbound")["results"]] == [sent["message_id"]]
        assert gb.calls == 4
        with pytest.raises(GentboxError) as refused:
            gb.create_contact({"full_name": "Ann"})
    assert refused.value.status == 403 and refused.value.code == "insufficient_scope"
    assert "contacts:write" in refused.value.fix


def test_a_session_client_walks_the_account_calls(gentbox, world):
    owner = world.owner()
    with gentbox(None) as gb:
        gb.login(owner.email, PASSWORD)
        assert gb.me()["next_step"]["code"] == "add_domain"
        assert gb.reference("messages")["resource"] == "messages"
