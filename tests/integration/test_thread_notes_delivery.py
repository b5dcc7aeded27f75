"""Issue 16 point 3: a thread's notes never leave the appliance. An outside sender writes in over
SMTP, the team writes notes on the thread (one mentioning a teammate, who is then assigned the
thread), the inbox's agent and the assignee both reply, and the worker delivers the replies to the
sender's MX (an aiosmtpd peer found through dnsmasq): the bytes that arrive there, and their
decoded parts, hold no note's text."""
from __future__ import annotations

from sqlalchemy import update

from appliance.models import SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, parsed

SUPPORT = "support@notes.example"
MARKERS = ("NOTE-SECRET-7f3a", "Internal: customer owes us 300")
SCOPES = ["email:read", "email:write", "email:send"]


def _decoded(raw: bytes) -> str:
    """Every text part of the delivered message, decoded (QP or base64 would hide a plain match)."""
    message = parsed(raw)
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")


def test_notes_never_reach_the_remote_mx(world, store, client, make_settings, remote_world, smtp_listener) -> None:
    owner = world.owner()
    support = world.sender(owner, SUPPORT, scopes=tuple(SCOPES))
    teammate_inbox = world.inbox(owner, "alice@notes.example")
    teammate = world.agent(owner, teammate_inbox, SCOPES)
    with store.session() as db:
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    mx = remote_world.receivers[0]
    remote_world.domain("customer.example", mx=[(10, mx)])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world))

    first = message_bytes("Invoice question", SUPPORT, sender="bob@customer.example",
                          message_id="<inv-1@customer.example>", body="Why is my invoice so high?")
    with smtp_client(listener) as smtp:
        assert smtp.sendmail("bob@customer.example", [SUPPORT], first) == {}
    [incoming] = client.get("/v1/messages/", headers=support.auth).json["results"]
    thread_id = incoming["thread_id"]
    for body, mentions in ((f"{MARKERS[0]}: check the contract", ["alice@notes.example"]), (MARKERS[1], [])):
        resp = client.post(f"/v1/messages/threads/{thread_id}/notes/", json={"body": body, "mentions": mentions},
                           headers=support.auth)
        assert resp.status_code == 201, resp.json
    assigned = client.post(f"/v1/messages/threads/{thread_id}/assign/", json={"assignee_inbox_id": teammate_inbox},
                           headers=support.auth)
    assert assigned.status_code == 200, assigned.json

    replies = [client.post("/v1/messages/", headers=support.auth, json={
                   "reply_to_message_id": incoming["message_id"], "text_body": "We are looking into it.",
                   "html_body": "<p>We are looking into it.</p>"}),
               client.post("/v1/messages/", headers=teammate.auth, json={
                   "reply_to_message_id": incoming["message_id"], "text_body": "Corrected invoice attached soon."})]
    assert [r.status_code for r in replies] == [201, 201], [r.json for r in replies]
    assert {r.json["thread_id"] for r in replies} == {thread_id}
    worker.run_once()
    worker.close()

    assert len(mx.deliveries) == 2
    for delivered in mx.deliveries:
        assert list(delivered.rcpt_tos) == ["bob@customer.example"]
        text = _decoded(delivered.data)
        assert "looking into it" in text or "Corrected invoice" in text
        for marker in MARKERS:
            assert marker.encode() not in delivered.data and marker not in text
    notes = client.get(f"/v1/messages/threads/{thread_id}/notes/", headers=teammate.auth).json["results"]
    assert [n["body"].split(":")[0] for n in notes] == [MARKERS[0], "Internal"]  # the notes are still there
