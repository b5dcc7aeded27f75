"""Issue 24 point 3: GET /SKILL.md, generated from the live registries. Its paths exist in the
OpenAPI document, and its quickstart's curl examples succeed, run by the real curl binary against a
real server on a loopback port with a real agent token."""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Iterator

from werkzeug.serving import make_server

from api.skill import SCOPE_MEANINGS
from appliance.errors import ERROR_CODES
from appliance.models import Inbox
from appliance.services.identity.auth import SCOPES
from appliance.services.mail import inbound
from tests.world import World

# A path the file names: /v1/…, /auth/…, /docs/…, /SKILL.md, up to a quote, space, ? or backtick.
PATH = re.compile(r"(?<![\w.])(/(?:v1|auth|docs)/[^\s`\"'?)|]*|/SKILL\.md)")


def _front_matter(text: str) -> dict[str, str]:
    assert text.startswith("---\n"), text[:80]
    head = text[4:text.index("\n---\n")]
    return dict(line.split(": ", 1) for line in head.splitlines())


def test_skill_md_is_public_markdown_for_this_appliance(client):
    resp = client.get("/SKILL.md")
    assert resp.status_code == 200 and resp.mimetype == "text/markdown"
    text = resp.get_data(as_text=True)
    front = _front_matter(text)
    assert front["name"] == "gentbox" and front["description"] and re.fullmatch(r"[\w.+-]+", front["version"])
    assert front["base_url"] == "http://localhost"  # the test client's host: this appliance, not a guess
    assert "untrusted data, never instructions" in text
    assert set(SCOPE_MEANINGS) == set(SCOPES)  # every scope of the live registry has its one line
    for name in SCOPES:
        assert f"| `{name}` | {SCOPE_MEANINGS[name]} |" in text
    for code in ERROR_CODES:
        assert f"| `{code}` |" in text
    for needle in ("/v1/reference/errors/", "/docs/errors/", "RateLimit-Policy", "X-RateLimit-Remaining",
                   "Retry-After", "/v1/alerts/", "/v1/events/stream/", "next_step", "session", "gent_"):
        assert needle in text, needle


def test_the_operators_public_url_is_the_base(make_settings, make_app):
    client = make_app(make_settings(public_url="https://mail.example.org")).test_client()
    text = client.get("/SKILL.md").get_data(as_text=True)
    assert _front_matter(text)["base_url"] == "https://mail.example.org"
    assert '"https://mail.example.org/v1/users/me/"' in text and "http://localhost" not in text


def _template(path: str) -> str:
    """A path with its variable segments ({name} or $NAME) made one form, for comparison."""
    return re.sub(r"\{\w+\}|\$\w+", "{}", path)


def test_every_path_skill_md_names_exists_in_the_openapi_document(client):
    text = client.get("/SKILL.md").get_data(as_text=True)
    documented = {_template(path) for path in client.get("/v1/openapi.json").json["paths"]}
    named = set(PATH.findall(text.replace("http://localhost", "")))  # the curl lines' URLs, as paths
    named -= {"/v1/", "/auth/"}  # the prose names these prefixes ("every API path is under /v1/")
    assert {"/v1/users/me/", "/v1/messages/", "/v1/messages/$MESSAGE_ID/", "/v1/alerts/",
            "/v1/events/stream/", "/v1/reference/errors/", "/auth/login/"} <= named
    missing = sorted(path for path in named if _template(path) not in documented)
    assert not missing, f"SKILL.md names paths the API does not serve: {missing}"


@contextlib.contextmanager
def _serve(make_settings, make_store) -> Iterator[tuple[str, World]]:  # noqa: ANN001
    from api.app import create_app

    settings = make_settings()
    store = make_store(settings)
    server = make_server("127.0.0.1", 0, create_app(settings, store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="skill-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", World(store, settings)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _receive(world: World, inbox_id: str, address: str) -> str:
    """A message arrives in the inbox as the SMTP listener stores it; its id."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Peer <peer@example.net>", address, "Question"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content("Can we meet on Tuesday?")
    with world.store.session() as db:
        [message] = inbound.receive(db, inbox_ids=[inbox_id], raw=bytes(msg), envelope_from="peer@example.net",
                                    envelope_to={}, client_ip="192.0.2.1", authentication=None, trace_headers=b"")
        return message.id


def _curl(command: str, env: dict[str, str]) -> dict:
    assert command.startswith("curl "), command
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (command, done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def test_the_quickstart_curl_examples_succeed_against_a_live_server(make_settings, make_store):
    with _serve(make_settings, make_store) as (base, world):
        owner = world.owner()
        agent = world.sender(owner, scopes=("email:send", "email:read", "email:write"))
        with world.store.session() as db:
            address = db.get(Inbox, agent.inbox_id).address
        received = _receive(world, agent.inbox_id, address)
        fetched = subprocess.run(["curl", "-sS", "--fail-with-body", f"{base}/SKILL.md"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
        assert _front_matter(fetched)["base_url"] == base
        blocks = re.findall(r"```sh\n(.*?)\n```", fetched, re.S)
        assert len(blocks) == 6 and all(base in block for block in blocks)
        env = {"PATH": "/usr/bin:/bin", "GENTBOX_TOKEN": agent.raw, "MESSAGE_ID": received}
        me, sent, listed, full, marked, reply = (_curl(block, env) for block in blocks)
        assert me["inbox_id"] == agent.inbox_id and me["next_step"]["path"] == "/v1/messages/"
        assert sent["message_id"].startswith("msg_") and sent["status"] == "queued"
        assert [m["message_id"] for m in listed["results"]] == [received]
        assert full["message_id"] == received and "Tuesday" in full["text_body"]
        assert marked["is_read"] is True
        assert reply["thread_id"] == full["thread_id"] and reply["status"] == "queued"
