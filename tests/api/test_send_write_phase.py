"""POST /v1/messages/ composes, signs and parses before it writes (issue 26 point 1: keep the API's
write lock short): on SQLite the send reads on a snapshot and takes the write lock only for its
inserts, so another writer holding the lock does not stop it from doing its slow part, and what
changed meanwhile (a paused inbox) is seen before anything is stored."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import func, select, update

from appliance.models import Inbox, Message, OutboundQueue
from appliance.services.mail import outbound
from tests.helpers import assert_error

SEND = {"to": [{"email": "someone@example.org"}], "subject": "Quarterly numbers", "text_body": "Up.\n"}


def _signing_seen(monkeypatch: pytest.MonkeyPatch, then=None) -> threading.Event:  # noqa: ANN001
    """An event set when a send reaches its DKIM signature (the real one still runs after)."""
    reached, real = threading.Event(), outbound.dkim.sign_with_keys

    def sign(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        reached.set()
        if then is not None:
            then()
        return real(*args, **kwargs)
    monkeypatch.setattr(outbound.dkim, "sign_with_keys", sign)
    return reached


def _stored(store, inbox_id: str) -> tuple[int, int]:  # noqa: ANN001
    with store.session() as db:
        sent = db.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id,
                                                                          Message.direction == "outbound"))
        queued = db.scalar(select(func.count()).select_from(OutboundQueue)
                           .where(OutboundQueue.message_id.in_(select(Message.id).where(Message.inbox_id == inbox_id))))
    return sent, queued


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's single writer is what this is about
def test_a_send_signs_while_another_writer_holds_the_lock(app, store, world, monkeypatch):
    """Before, the send took the write lock at its first statement (the token check) and could do
    nothing while another writer held it; now it composes and signs meanwhile, then commits."""
    agent = world.sender(world.owner(), "ann@sales.example.com")
    reached = _signing_seen(monkeypatch)
    holder = sqlite3.connect(store.engine.url.database, timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (the SMTP listener, the worker) mid-commit
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(
        app.test_client().post("/v1/messages/", json=SEND, headers=agent.auth).status_code))
    sender.start()
    try:
        assert reached.wait(timeout=20), "the send never got to signing while another writer held the lock"
        assert answers == []  # it waits for the lock only to store
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sender.join(timeout=60)
    assert answers == [201]
    assert _stored(store, agent.inbox_id) == (1, 1)


def test_an_inbox_paused_while_its_message_is_signed_sends_nothing(app, store, world, monkeypatch):
    """The pause commits after the send read the inbox as active: the write phase reads it again,
    answers 409 and stores nothing (no sent copy, no queue row, no charge)."""
    agent = world.sender(world.owner(), "bob@sales.example.com")

    def pause() -> None:
        with store.session() as db:
            db.execute(update(Inbox).where(Inbox.id == agent.inbox_id).values(status="paused"))
    _signing_seen(monkeypatch, then=pause)
    answer = app.test_client().post("/v1/messages/", json=SEND, headers=agent.auth)
    assert_error(answer, 409, "conflict")
    assert "paused" in answer.get_json()["error"]["message"]
    assert _stored(store, agent.inbox_id) == (0, 0)


def test_concurrent_sends_all_land(app, store, world):
    """Sends side by side on one app: every one is stored and queued once, none refused as busy."""
    agent = world.sender(world.owner(), "cy@sales.example.com")
    start, answers = threading.Barrier(8), []

    def send(n: int) -> None:
        client = app.test_client()
        start.wait()
        for i in range(3):
            body = {**SEND, "subject": f"Numbers {n}-{i}"}
            answers.append(client.post("/v1/messages/", json=body, headers=agent.auth).status_code)
    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == [201] * 24
    assert _stored(store, agent.inbox_id) == (24, 24)
