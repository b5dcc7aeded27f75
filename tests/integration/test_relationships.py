"""Issue 21 point 2: the relationship graph, kept by the activity projector as mail flows.

The agent sends with the API and Ann answers over real SMTP (smtplib to our listener, threaded
by In-Reply-To); the worker's projector updates counts, last times, decayed weights and shared
threads. Strength is S/(S+4) with S the messages' weights halving every 30 days (moved with the
injected clock); edges count the threads two people share, once per thread.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from appliance import clock
from appliance.models import Message
from appliance.worker import Worker
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401

AGENT = "desk@graph.example"
ANN, BOB, CY = "ann@partner.example", "bob@partner.example", "cy@partner.example"
SCOPES = ("email:send", "email:read", "context:read")


def _send(client, agent, subject: str, *to: str) -> str:
    resp = client.post("/v1/messages/", headers=agent.auth, json={
        "to": [{"email": a, "name": a.split("@")[0].title()} for a in to], "subject": subject, "text_body": "Hi."})
    assert resp.status_code == 201, resp.json
    return resp.json["message_id"]


def _graph(client, agent, path: str = "/v1/relationships/", **query) -> tuple[dict, dict]:
    resp = client.get(path, headers=agent.auth, query_string=query)
    assert resp.status_code == 200, resp.json
    nodes = {n["address"]: n for n in resp.json["nodes"]}
    edges = {(e["source"], e["target"]): e["weight"] for e in resp.json["edges"]}
    return resp.json, (nodes, edges)


def test_strength_counts_and_shared_thread_edges_follow_the_mail(world, store, settings, client,
                                                                 smtp_listener) -> None:
    owner = world.owner()
    agent = world.sender(owner, AGENT, scopes=SCOPES)
    worker = Worker(store, settings)
    listener = smtp_listener()
    try:
        plan = _send(client, agent, "Plan", ANN, BOB)  # thread 1: Ann and Bob
        _send(client, agent, "Budget", BOB, CY)  # thread 2: Bob and Cy
        with store.session() as db:
            header = db.get(Message, plan).message_id_header
        raw = (f"From: Ann <{ANN}>\r\nTo: {AGENT}\r\nCc: {BOB}\r\nSubject: Re: Plan\r\n"
               f"Message-ID: <re-plan@partner.example>\r\nIn-Reply-To: {header}\r\nReferences: {header}\r\n"
               "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nAgreed.\r\n").encode()
        with smtp_client(listener) as smtp:
            smtp.sendmail(ANN, [AGENT], raw)
        _send(client, agent, "Plan v2", ANN, BOB)  # thread 3: Ann and Bob again
        _send(client, agent, "Lunch", BOB)
        worker.project_activity()
    finally:
        worker.close()
    with store.session() as db:  # Ann's answer joined thread 1 (so it adds no shared thread)
        assert db.scalar(select(Message.thread_id).where(Message.message_id_header == "<re-plan@partner.example>")) \
            == db.get(Message, plan).thread_id

    body, (nodes, edges) = _graph(client, agent)
    assert [n["address"] for n in body["nodes"]] == [BOB, ANN, CY]  # strongest first
    assert (nodes[BOB]["outbound_count"], nodes[BOB]["inbound_count"]) == (4, 0)
    assert (nodes[ANN]["outbound_count"], nodes[ANN]["inbound_count"]) == (2, 1)
    assert nodes[ANN]["last_inbound_at"] and nodes[BOB]["last_inbound_at"] is None
    assert nodes[ANN]["name"] == "Ann" and nodes[ANN]["contact_id"].startswith("ctc_")
    assert [nodes[a]["strength"] for a in (BOB, ANN, CY)] == [0.5, 0.4286, 0.2]  # S/(S+4), S = 4, 3, 1
    assert edges == {(AGENT, BOB): 4, (AGENT, ANN): 3, (AGENT, CY): 1, (ANN, BOB): 2, (BOB, CY): 1}

    stranger = world.sender(world.owner(), "desk@elsewhere.example", scopes=SCOPES)
    no_scope = world.agent(owner, agent.inbox_id, ["email:read"])
    clock.advance(dt.timedelta(days=30))  # one half-life: S halves, the order stays
    body, (nodes, _edges) = _graph(client, agent)
    assert [nodes[a]["strength"] for a in (BOB, ANN, CY)] == [0.3333, 0.2727, 0.1111]

    _body, (nodes, edges) = _graph(client, agent, limit=1)
    assert list(nodes) == [BOB] and edges == {(AGENT, BOB): 4}
    _body, (nodes, edges) = _graph(client, agent, f"/v1/relationships/{CY}/")
    assert set(nodes) == {CY, BOB} and edges == {(AGENT, CY): 1, (AGENT, BOB): 4, (BOB, CY): 1}
    resp = client.get("/v1/relationships/nobody@partner.example/", headers=agent.auth)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"

    assert _graph(client, stranger)[0] == {"nodes": [], "edges": []}
    assert client.get(f"/v1/relationships/{BOB}/", headers=stranger.auth).status_code == 404
    assert client.get("/v1/relationships/", headers=no_scope.auth).status_code == 403
