"""Reply threading end to end: an outside sender writes in over SMTP, the agent replies through
the API, the worker delivers the reply to the sender's MX, the sender answers again, and each
side sees one thread."""
from __future__ import annotations

from sqlalchemy import update

from appliance.models import SystemMail
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings, parsed

AGENT = "agent@roundtrip.example"


def test_an_outside_sender_and_the_agent_keep_one_thread(world, store, client, make_settings,
                                                         remote_world, smtp_listener) -> None:
    owner = world.owner()
    agent = world.sender(owner, AGENT)
    with store.session() as db:
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    alice_mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, alice_mx)])
    listener = smtp_listener()
    worker = Worker(store, delivery_settings(make_settings, remote_world))

    # 1. Alice writes in.
    first = message_bytes("Plans for Q3", AGENT, sender="alice@partner.example",
                          message_id="<q3-1@partner.example>", body="Shall we meet on Monday?")
    with smtp_client(listener) as smtp:
        assert smtp.sendmail("alice@partner.example", [AGENT], first) == {}
    [incoming] = world_messages(client, agent)
    assert incoming["subject"] == "Plans for Q3"

    # 2. The agent replies through the API; the worker delivers it to Alice's MX.
    resp = client.post("/v1/messages/", headers=agent.auth,
                       json={"reply_to_message_id": incoming["message_id"], "text_body": "Monday works."})
    assert resp.status_code == 201, resp.json
    assert resp.json["thread_id"] == incoming["thread_id"]
    worker.run_once()
    worker.close()
    [delivered] = alice_mx.deliveries
    reply = parsed(delivered.data)
    assert list(delivered.rcpt_tos) == ["alice@partner.example"]
    assert reply["To"] == "Alice <alice@partner.example>" and reply["Subject"] == "Re: Plans for Q3"
    assert reply["In-Reply-To"] == "<q3-1@partner.example>"
    assert reply["References"] == "<q3-1@partner.example>"

    # 3. Alice answers the reply, quoting both ids, as mail clients do.
    answer = message_bytes("Re: Plans for Q3", AGENT, sender="alice@partner.example",
                           message_id="<q3-3@partner.example>", body="Great, see you then.")
    answer = answer.replace(b"\r\n\r\n", (f"\r\nIn-Reply-To: {reply['Message-ID']}\r\nReferences: "
                                          f"<q3-1@partner.example> {reply['Message-ID']}\r\n\r\n").encode(), 1)
    with smtp_client(listener) as smtp:
        assert smtp.sendmail("alice@partner.example", [AGENT], answer) == {}

    messages = world_messages(client, agent)
    assert len(messages) == 3 and {m["thread_id"] for m in messages} == {incoming["thread_id"]}
    thread = client.get(f"/v1/messages/threads/{incoming['thread_id']}/", headers=agent.auth).json
    assert thread["message_count"] == 3
    assert [(m["direction"], m["subject"]) for m in thread["messages"]] == [
        ("inbound", "Plans for Q3"), ("outbound", "Re: Plans for Q3"), ("inbound", "Re: Plans for Q3")]
    assert thread["messages"][1]["status"] == "sent"


def world_messages(client, agent) -> list[dict]:  # noqa: ANN001
    resp = client.get("/v1/messages/", headers=agent.auth)
    assert resp.status_code == 200
    return resp.json["results"]
