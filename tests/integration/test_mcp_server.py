"""Issue 24 point 4: the MCP server, driven by the mcp SDK's own client, in-process and over
streamable HTTP against a live uvicorn server (port 0): tools, a send with cc and an attachment
that a real aiosmtpd peer receives, the peer's reply read back, search, a held send approved with
a person's session, and the API's errors (code and fix) on refusals."""
from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import socket
import threading
import time
from typing import Any, Iterator

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import update

from api import mcp_server
from api.app import create_app
from appliance.models import SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401

AGENT = "agent@mcp-test.example"
EXPECTED_TOOLS = {"whoami", "list_messages", "search_messages", "get_message", "get_thread", "send_message",
                  "reply_to_message", "mark_read", "set_labels", "list_contacts", "create_contact",
                  "create_event", "list_agenda", "create_task", "list_approvals", "approve_action",
                  "reject_action"}


@contextlib.contextmanager
def live_mcp(flask_app) -> Iterator[str]:  # noqa: ANN001
    """`gentbox mcp --http`'s ASGI app under uvicorn on a loopback port picked by the kernel."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(mcp_server.http_app(flask_app), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the MCP server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@contextlib.asynccontextmanager
async def over_http(url: str, token: str):  # noqa: ANN201
    """The SDK's client over streamable HTTP, sending the bearer token."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def call(client: Client, tool: str, **arguments: Any) -> tuple[bool, dict]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), result.structured_content or {}


def test_in_process_tools_hints_strict_arguments_and_scope_errors(app, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    reader = world.agent(owner, inbox_id, ["email:read"])
    server = mcp_server.build_server(mcp_server.Gateway(app, reader.raw))

    async def scenario() -> None:
        async with Client(server) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(listed) == EXPECTED_TOOLS
            for tool in listed.values():
                assert tool.input_schema.get("additionalProperties") is False, tool.name
                assert tool.annotations is not None and tool.annotations.read_only_hint is not None
            assert listed["get_message"].annotations.read_only_hint is True
            assert "untrusted data" in listed["get_message"].description
            assert listed["reject_action"].annotations.destructive_hint is True
            assert listed["send_message"].annotations.idempotent_hint is False
            assert "Excludes every filter" in listed["list_messages"].input_schema["properties"]["cursor"]["description"]

            failed, me = await call(client, "whoami")
            assert not failed and me["inbox_id"] == inbox_id and me["scopes"] == ["email:read"]
            # No argument is silently dropped: an unknown one is an error naming it.
            failed, body = await call(client, "list_messages", direction="inbound", folder="INBOX")
            assert failed and body["error"]["code"] == "validation_error" and body["error"]["field"] == "folder"
            failed, body = await call(client, "list_messages", cursor="abc", unread=True)
            assert failed and body["error"]["field"] == "unread" and "cursor" in body["error"]["fix"]
            # The API's own refusal, with its code and fix.
            failed, body = await call(client, "send_message", to=[{"email": "x@example.net"}], text_body="Hi")
            assert failed and body["error"]["code"] == "insufficient_scope"
            assert "email:send" in body["error"]["fix"]

    anyio.run(scenario)


def test_over_streamable_http_send_read_reply_search_and_approve(world, store, settings, remote_world,
                                                                smtp_listener):
    settings = settings.model_copy(update={"delivery_port": remote_world.port, "dns_servers": (remote_world.dns_address,),
                                           "dns_timeout": 0.5, "dns_lifetime": 1.0, "delivery_timeout": 3.0})
    flask_app = create_app(settings, store)
    owner = world.owner()
    agent = world.sender(owner, AGENT, scopes=("email:send", "email:read", "email:write"))
    held = world.agent(owner, agent.inbox_id, ["email:send"], requires_approval=["email:send"])
    reader = world.agent(owner, agent.inbox_id, ["email:read"])
    with store.session() as db:
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    peer_mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, peer_mx)])
    listener = smtp_listener(settings=settings)
    worker = Worker(store, settings)

    with live_mcp(flask_app) as url:
        async def send_and_read() -> dict:
            async with over_http(url, agent.raw) as client:
                assert {t.name for t in (await client.list_tools()).tools} == EXPECTED_TOOLS
                failed, sent = await call(
                    client, "send_message", to=[{"email": "alice@partner.example", "name": "Alice"}],
                    cc=[{"email": "bob@partner.example"}], subject="Quarterly plan", text_body="See the plan.",
                    attachments=[{"filename": "plan.txt", "content_type": "text/plain",
                                  "content_base64": base64.b64encode(b"step one").decode()}])
                assert not failed and sent["status"] == "queued", sent
                return sent

        sent = anyio.run(send_and_read)
        worker.run_once()
        [delivered] = peer_mx.deliveries
        assert sorted(delivered.rcpt_tos) == ["alice@partner.example", "bob@partner.example"]
        outgoing = email.message_from_bytes(delivered.data, policy=email.policy.default)
        assert outgoing["Cc"] == "bob@partner.example"
        [attachment] = list(outgoing.iter_attachments())
        assert attachment.get_filename() == "plan.txt" and attachment.get_content() == "step one"

        # The peer answers, threading on our Message-ID, through our SMTP listener.
        answer = message_bytes("Re: Quarterly plan", AGENT, sender="alice@partner.example",
                               message_id="<answer-1@partner.example>", body="Agreed, marmalade budget approved.")
        answer = answer.replace(b"\r\n\r\n", f"\r\nIn-Reply-To: {outgoing['Message-ID']}\r\n\r\n".encode(), 1)
        with smtp_client(listener) as smtp:
            assert smtp.sendmail("alice@partner.example", [AGENT], answer) == {}

        async def read_reply_search_and_approve() -> None:
            async with over_http(url, agent.raw) as client:
                failed, page = await call(client, "list_messages", thread_id=sent["thread_id"], direction="inbound")
                assert not failed and [m["subject"] for m in page["results"]] == ["Re: Quarterly plan"]
                failed, reply = await call(client, "get_message", message_id=page["results"][0]["message_id"])
                assert not failed and "marmalade" in reply["text_body"]
                failed, found = await call(client, "search_messages", q="marmalade")
                assert not failed and [m["message_id"] for m in found["results"]] == [reply["message_id"]]
                failed, marked = await call(client, "mark_read", message_id=reply["message_id"])
                assert not failed and marked["is_read"] is True
            async with over_http(url, held.raw) as client:
                failed, holding = await call(client, "send_message", to=[{"email": "alice@partner.example"}],
                                             subject="Held", text_body="Wait for a person.")
                assert not failed and holding["queued"] is True, holding
                failed, body = await call(client, "approve_action", approval_id=holding["approval_id"])
                assert failed and body["error"]["code"] == "insufficient_scope"  # approvals:write: people
            async with over_http(url, owner.access_token) as client:
                failed, pending = await call(client, "list_approvals", status="pending", inbox_id=agent.inbox_id)
                assert not failed and [a["approval_id"] for a in pending["results"]] == [holding["approval_id"]]
                failed, _ = await call(client, "approve_action", approval_id=holding["approval_id"],
                                       inbox_id=agent.inbox_id)
                assert not failed
                failed, pending = await call(client, "list_approvals", status="pending", inbox_id=agent.inbox_id)
                assert not failed and pending["results"] == []
            async with over_http(url, reader.raw) as client:
                failed, body = await call(client, "send_message", to=[{"email": "alice@partner.example"}],
                                          text_body="No scope.")
                assert failed and body["error"]["code"] == "insufficient_scope"
                assert body["error"]["fix"] == "Ask the inbox owner for a token with the email:send scope."

        anyio.run(read_reply_search_and_approve)
        worker.run_once()
        assert [d.data.count(b"Subject: Held") for d in peer_mx.deliveries[1:]] == [1]
    worker.close()


def test_http_refuses_a_missing_or_unknown_token_with_the_apis_error(app):
    with live_mcp(app) as url:
        for headers in ({}, {"Authorization": "Bearer gent_" + "x" * 44}):
            resp = httpx2.post(url, headers={**headers, "Accept": "application/json, text/event-stream"},
                               json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["code"] in {"unauthenticated", "token_revoked"}
            assert resp.json()["error"]["fix"] and resp.headers["WWW-Authenticate"] == "Bearer"


def test_gentbox_mcp_over_stdio_acts_with_its_token(world, settings):
    """`gentbox mcp`, launched by the SDK's stdio client as a local agent would, with GENTBOX_TOKEN."""
    import os
    import sys

    from mcp import StdioServerParameters

    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env.update(GENTBOX_DATA_DIR=str(settings.data_dir), GENTBOX_DATABASE_URL=settings.database_url,
               GENTBOX_SECRET_KEY=settings.secret_key, GENTBOX_TOKEN=agent.raw)
    params = StdioServerParameters(command=sys.executable, args=["-m", "appliance.cli", "mcp"], env=env)

    async def scenario() -> None:
        async with Client(params) as client:
            assert {t.name for t in (await client.list_tools()).tools} == EXPECTED_TOOLS
            failed, me = await call(client, "whoami")
            assert not failed and me["inbox_id"] == inbox_id
            failed, body = await call(client, "create_task", summary="Call Ann")
            assert failed and body["error"]["code"] == "insufficient_scope" and "task:write" in body["error"]["fix"]

    anyio.run(scenario)
