"""Outbound connection reuse (issue 26.1): several messages per SMTP session, bounded connections
per destination and in total, and what a session that fails or refuses one message costs the rest.

The far side is a real aiosmtpd sink per destination (port 0 shared by the remote world, domains
published in the test dnsmasq) that counts connections, transactions and connections open at once,
advertises PIPELINING, and can drop a session after its n-th message or refuse one message.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import email
import threading
import time

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import event, select, update

from appliance import clock
from appliance.models import OutboundRecipient, SystemMail
from appliance.services.automation import events
from appliance.services.mail import outbound
from appliance.worker import Worker
from tests.integration.remote_mail import remote_world  # noqa: F401

SENDER = "agent@sessions-test.example"


class Counter:
    """Connections open at once, across every sink that shares it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.peak = 0

    def opened(self) -> None:
        with self.lock:
            self.open += 1
            self.peak = max(self.peak, self.open)

    def closed(self) -> None:
        with self.lock:
            self.open -= 1


class Sink:
    """An aiosmtpd receiver that counts what the worker does to it."""

    def __init__(self, host: str, port: int, together: Counter, *, drop_after: int = 0, drop_data_at: int = 0,
                 refuse_subject: str = "", refuse_rcpt: str = "") -> None:
        self.host, self.port, self.together = host, port, together
        self.mine = Counter()
        self.drop_after = drop_after  # close the session after replying 250 to its n-th message
        self.drop_data_at = drop_data_at  # once: read the n-th message of a session, close without a reply
        self.refuse_subject, self.refuse_rcpt = refuse_subject, refuse_rcpt  # 451 to that DATA / RCPT
        self.connections = 0
        self.message_ids: list[str] = []
        self.rsets = 0
        self.pipelined = 0  # MAIL FROM that arrived with its RCPT TO already behind it
        self.loop = asyncio.new_event_loop()
        self.server = None

    def start(self) -> "Sink":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(
                    self.loop.create_server(lambda: _Session(self), self.host, self.port))
                self.port = self.server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                self.loop.close()
                return
            ready.set()
            self.loop.run_forever()
            self.server.close()
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        if failure:
            raise OSError(str(failure[0]))
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _Session(SMTP):

    def __init__(self, sink: Sink) -> None:
        super().__init__(_Handler(sink), hostname="mx.sessions.test", ident="sink")
        self.sink = sink
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sink.connections += 1
        self.sink.mine.opened()
        self.sink.together.opened()
        self.counted = True
        super().connection_made(transport)

    def ended(self) -> None:
        """At QUIT (the client waits for its reply before it opens another) or when the line drops."""
        if self.counted:
            self.counted = False
            self.sink.mine.closed()
            self.sink.together.closed()

    def connection_lost(self, error: Exception | None) -> None:
        self.ended()
        super().connection_lost(error)


class _Handler:

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001, ANN201
        server.ended()
        return "221 Bye"

    async def handle_RSET(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.sink.rsets += 1
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201
        if b"RCPT TO" in bytes(getattr(server._reader, "_buffer", b"")):
            self.sink.pipelined += 1
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        if self.sink.refuse_rcpt and address == self.sink.refuse_rcpt:
            return "451 4.3.0 Busy, try later (test sink)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        sink = self.sink
        server.messages += 1
        if sink.drop_data_at and server.messages == sink.drop_data_at:
            sink.drop_data_at = 0  # once
            server.transport.close()
            return None
        message = email.message_from_bytes(envelope.original_content)
        if sink.refuse_subject and message["Subject"] == sink.refuse_subject:
            return "451 4.3.0 Not this one now (test sink)"
        await asyncio.sleep(0.02)  # a peer that takes a moment, so parallel sessions overlap
        sink.message_ids.append(message["Message-ID"])
        if sink.drop_after and server.messages == sink.drop_after:
            asyncio.get_running_loop().call_soon(server.transport.close)  # after this 250 is written
        return "250 2.0.0 OK: queued"


@pytest.fixture
def sessions_world(world, store, client, make_settings, remote_world):  # noqa: F811
    owner = world.owner()
    agent = world.sender(owner, SENDER)
    world.signing_key("sessions-test.example")
    with store.session() as db:  # the owner's sign-up email is not what these tests count
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    together = Counter()
    sinks: list[Sink] = []

    def add_sink(domain: str, **options) -> Sink:
        sink = remote_world._bind_shared(lambda host, port: Sink(host, port, together, **options).start())
        sinks.append(sink)
        remote_world.domain(domain, mx=[(10, sink.host)])
        return sink

    def worker(**overrides) -> Worker:
        settings = make_settings(delivery_port=remote_world.port, dns_servers=remote_world.dns_address,
                                 dns_timeout=0.5, dns_lifetime=1.0, delivery_timeout=5.0, **overrides)
        made = Worker(store, settings)
        workers.append(made)
        return made

    def send(to: str, subject: str) -> str:
        resp = client.post("/v1/messages/", json={"to": [{"email": to}], "subject": subject, "text_body": "Hi."},
                           headers=agent.auth)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.json["message_id"]

    workers: list[Worker] = []
    yield type("SessionsWorld", (), {"add_sink": staticmethod(add_sink), "worker": staticmethod(worker),
                                     "send": staticmethod(send), "together": together, "store": store,
                                     "client": client, "agent": agent})
    for made in workers:
        made.close()
    for sink in sinks:
        sink.stop()
    clock.reset()


def _header_ids(w, message_ids: list[str]) -> dict[str, str]:
    """message id -> its Message-ID header, as the sink sees it."""
    found = {}
    for message_id in message_ids:
        raw = w.client.get(f"/v1/messages/{message_id}/raw/", headers=w.agent.auth).data
        found[message_id] = email.message_from_bytes(raw)["Message-ID"]
    return found


def _statuses(w) -> collections.Counter:
    with w.store.session() as db:
        return collections.Counter(db.scalars(select(OutboundRecipient.status)))


def _exactly_once(sink: Sink, w, message_ids: list[str]) -> None:
    counted = collections.Counter(sink.message_ids)
    assert sorted(counted) == sorted(_header_ids(w, message_ids).values())
    assert set(counted.values()) == {1}, counted


def test_messages_to_one_destination_share_at_most_k_sessions_with_pipelining_and_rset(sessions_world) -> None:
    w = sessions_world
    sink = w.add_sink("one.example")
    sent = [w.send(f"r{i}@one.example", f"Message {i}") for i in range(12)]
    worker = w.worker(delivery_concurrency=6, delivery_connections_per_destination=2)
    worker.run_once()
    assert _statuses(w) == {"delivered": 12}
    _exactly_once(sink, w, sent)
    assert 1 <= sink.connections <= 2  # 12 transactions over at most 2 connections
    assert sink.mine.peak <= 2
    # Every transaction after a session's first began with RSET, pipelined with MAIL and RCPT.
    assert sink.rsets == 12 - sink.connections
    assert sink.pipelined == 12
    assert worker.sessions.open_count() == 0  # the pass closed its sessions


def test_a_session_dropped_after_its_second_message_costs_the_rest_nothing(sessions_world) -> None:
    w = sessions_world
    sink = w.add_sink("drops.example", drop_after=2)
    sent = [w.send(f"r{i}@drops.example", f"Message {i}") for i in range(7)]
    worker = w.worker(delivery_concurrency=4, delivery_connections_per_destination=1)
    worker.run_once()
    assert _statuses(w) == {"delivered": 7}  # the kept session was found closed: a new one at once
    _exactly_once(sink, w, sent)
    assert sink.connections == 4  # 2 + 2 + 2 + 1


def test_a_session_lost_during_a_message_defers_only_that_one_which_is_delivered_once_later(sessions_world) -> None:
    w = sessions_world
    sink = w.add_sink("lost.example", drop_data_at=3)
    sent = [w.send(f"r{i}@lost.example", f"Message {i}") for i in range(6)]
    worker = w.worker(delivery_concurrency=3, delivery_connections_per_destination=1)
    worker.run_once()
    assert _statuses(w) == {"delivered": 5, "deferred": 1}
    with w.store.session() as db:
        [lost] = db.scalars(select(OutboundRecipient).where(OutboundRecipient.status == "deferred")).all()
        assert lost.attempts == 1 and "lost during the transaction" in lost.smtp_reply
    assert sink.connections == 2  # the one lost, then a new session for the rest
    clock.advance(dt.timedelta(hours=1))
    worker.run_once()
    assert _statuses(w) == {"delivered": 6}
    _exactly_once(sink, w, sent)


def test_connections_stay_within_the_bounds_per_destination_and_in_total(sessions_world) -> None:
    w = sessions_world
    first, second = w.add_sink("first.example"), w.add_sink("second.example")
    sent = [w.send(f"r{i}@{domain}", f"Message {i}") for i in range(10) for domain in ("first.example",
                                                                                          "second.example")]
    worker = w.worker(delivery_concurrency=8, delivery_connections_per_destination=2,
                      delivery_connections_total=3)
    worker.run_once()
    assert _statuses(w) == {"delivered": 20}
    assert first.mine.peak <= 2 and second.mine.peak <= 2
    assert w.together.peak <= 3
    assert len(first.message_ids) == len(second.message_ids) == 10
    assert collections.Counter(first.message_ids + second.message_ids).most_common(1)[0][1] == 1
    assert len(sent) == 20


def test_a_4xx_for_one_message_in_a_session_does_not_fail_the_others(sessions_world) -> None:
    w = sessions_world
    sink = w.add_sink("picky.example", refuse_subject="Not now", refuse_rcpt="busy@picky.example")
    sent = [w.send(f"r{i}@picky.example", f"Message {i}") for i in range(3)]
    w.send("r3@picky.example", "Not now")
    w.send("busy@picky.example", "Busy")
    sent += [w.send(f"r{i}@picky.example", f"Message {i}") for i in range(4, 7)]
    worker = w.worker(delivery_concurrency=2, delivery_connections_per_destination=1)
    worker.run_once()
    assert _statuses(w) == {"delivered": 6, "deferred": 2}
    with w.store.session() as db:
        replies = sorted(r.smtp_reply[:3] for r in db.scalars(
            select(OutboundRecipient).where(OutboundRecipient.status == "deferred")))
    assert replies == ["451", "451"]
    assert sink.connections == 1  # the refusals left the session usable
    _exactly_once(sink, w, sent)


def test_outcomes_waiting_together_are_recorded_in_one_transaction(sessions_world) -> None:
    w = sessions_world
    sent = [w.send(f"r{i}@batch.example", f"Message {i}") for i in range(5)]
    worker = w.worker()
    with w.store.session() as db:
        jobs = outbound.claim(db, worker.settings, owner=worker.name, limit=10)
    assert len(jobs) == 5
    commits = []

    def count(conn) -> None:  # noqa: ANN001
        commits.append(1)
    event.listen(w.store.engine, "commit", count)

    def record(job: outbound.Job) -> None:
        with events.acting_as(events.WORKER):
            worker.recorder.record(job, {rcpt: outbound.Reply(250, "2.0.0 OK", "mx.batch.example")
                                         for rcpt in job.recipients})

    with worker.recorder._turn:  # one write is in progress: the five outcomes queue up behind it
        threads = [threading.Thread(target=record, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(worker.recorder._waiting) < 5:
            assert time.monotonic() < deadline, "the outcomes never queued"
            time.sleep(0.01)
    for thread in threads:
        thread.join(30)
    event.remove(w.store.engine, "commit", count)
    assert len(commits) == 1  # five outcomes, one transaction
    assert _statuses(w) == {"delivered": 5}
    statuses = {w.client.get(f"/v1/messages/{m}/", headers=w.agent.auth).json["status"] for m in sent}
    assert statuses == {"sent"}
