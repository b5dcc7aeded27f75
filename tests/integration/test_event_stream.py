"""The live event stream GET /v1/events/stream/ (issue 15 point 5), served by a real threaded HTTP
server on a loopback port and read over real sockets, on SQLite and PostgreSQL: resuming with
Last-Event-ID replays exactly what was missed, wake-ups within a second of a commit, the open-stream
limits, the end of a revoked token's stream, keepalive comments, type filter and tenancy."""
from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest
from werkzeug.serving import make_server

from appliance.services.automation import events, stream
from appliance.services.identity import tokens
from appliance.services.identity.auth import authenticate
from tests.world import World

DEADLINE = 10.0  # seconds any single wait may take before the test fails


@dataclass
class Server:
    host: str
    port: int
    store: object
    world: World


@contextlib.contextmanager
def _serve(make_settings, make_store, **overrides) -> Iterator[Server]:  # noqa: ANN001, ANN003
    from api.app import create_app

    settings = make_settings(**overrides)
    store = make_store(settings)
    server = make_server("127.0.0.1", 0, create_app(settings, store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="stream-test-server", daemon=True)
    thread.start()
    try:
        yield Server("127.0.0.1", server.server_port, store, World(store, settings))
    finally:
        stream.notifier_for(store).close()  # open streams end, the notifier thread stops
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live(make_settings, make_store) -> Iterator[Server]:  # noqa: ANN001
    with _serve(make_settings, make_store, event_stream_keepalive=60.0, event_stream_auth_interval=0.2) as server:
        yield server


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: dict | None = None
    comments: list[str] = field(default_factory=list)


class Reader:
    """An SSE client over http.client: one connection, read line by line with a deadline."""

    def __init__(self, server: Server, headers: dict[str, str], query: str = "") -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE)
        self.conn.request("GET", "/v1/events/stream/" + (f"?{query}" if query else ""), headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def error(self) -> dict:
        return json.loads(self.resp.read())

    def next(self) -> Message | None:
        """The next message or comment block; None when the server ended the stream."""
        msg = Message()
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if msg.id or msg.event or msg.data or msg.comments:
                    return msg
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                msg.comments.append(value)
            elif name == "id":
                msg.id = value
            elif name == "event":
                msg.event = value
            elif name == "data":
                msg.data = json.loads(value)

    def next_event(self) -> Message:
        while True:
            msg = self.next()
            assert msg is not None, "the stream ended"
            if msg.data is not None:
                return msg

    def close(self) -> None:
        self.resp.close()  # the response holds the socket open too
        self.conn.close()


def _open_when_free(server: Server, headers: dict[str, str], query: str = "") -> Reader:
    """A stream opened as a client heeding Retry-After would, but with a short wait (polling)."""
    deadline = time.monotonic() + DEADLINE
    while (reader := Reader(server, headers, query)).status == 429 and time.monotonic() < deadline:
        reader.close()
        time.sleep(0.05)
    return reader


def _emit(store, owner, inbox_id: str, type_: str = "message.updated", n: int = 1) -> list[str]:  # noqa: ANN001
    """Commit n events (one transaction each); their resource ids, in commit order."""
    made = []
    for i in range(n):
        resource = f"msg_{len(made):04d}{i}"
        with store.session() as db:
            events.emit(db, type_, tenant_id=owner.tenant_id, inbox_id=inbox_id, resource_id=resource,
                        payload={"n": i})
        made.append(resource)
    return made


def _agent(world: World, owner=None, scopes=("email:read",)):  # noqa: ANN001, ANN202
    owner = owner or world.owner()
    inbox_id = world.inbox(owner)
    return owner, world.agent(owner, inbox_id, list(scopes))


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events_then_live_ones(live: Server) -> None:
    owner, agent = _agent(live.world)
    other_inbox = live.world.inbox(owner)
    reader = Reader(live, agent.auth)
    assert reader.status == 200 and reader.resp.getheader("Content-Type").startswith("text/event-stream")
    _emit(live.store, owner, agent.inbox_id)
    first = reader.next_event()
    assert first.event == "message.updated" and first.id == str(first.data["seq"])
    reader.close()  # the client goes away

    missed = []
    for _ in range(10):  # 50 events in 10 bursts, with another inbox's events between them
        missed += _emit(live.store, owner, agent.inbox_id, n=5)
        _emit(live.store, owner, other_inbox, n=2)
    reader = Reader(live, {**agent.auth, "Last-Event-ID": first.id})
    assert reader.status == 200
    got = [reader.next_event() for _ in range(50)]
    assert [m.data["resource_id"] for m in got] == missed
    seqs = [int(m.id) for m in got]
    assert seqs == sorted(set(seqs)) and seqs[0] > int(first.id)
    assert all(m.data["inbox_id"] == agent.inbox_id for m in got)
    live_one = _emit(live.store, owner, agent.inbox_id)
    after = reader.next_event()  # the next one is the live event: no duplicate of the replay
    assert after.data["resource_id"] == live_one[0] and int(after.id) > seqs[-1]
    reader.close()

    # `after=` works as the header does; the header wins over it. (The server frees the slots of
    # the closed streams when it notices their sockets closed, within a second: until then, 429.)
    reader = _open_when_free(live, {**agent.auth, "Last-Event-ID": str(seqs[-2])}, query=f"after={first.id}")
    assert [reader.next_event().data["resource_id"] for _ in range(2)] == [missed[-1], live_one[0]]
    reader.close()


def test_a_new_event_arrives_within_a_second_of_its_commit(live: Server) -> None:
    owner, agent = _agent(live.world)
    reader = Reader(live, agent.auth)
    assert reader.next().comments == ["connected"]  # the stream is open and waiting
    latencies = []
    for _ in range(5):
        resource = _emit(live.store, owner, agent.inbox_id)[0]
        committed = time.monotonic()
        msg = reader.next_event()
        latencies.append(time.monotonic() - committed)
        assert msg.data["resource_id"] == resource
    reader.close()
    assert max(latencies) < 1.0, latencies


def test_open_streams_are_limited_per_token_and_a_revoked_tokens_stream_ends(make_settings, make_store) -> None:
    with _serve(make_settings, make_store, event_stream_auth_interval=0.2, event_stream_max_per_process=3) as live:
        owner, agent = _agent(live.world)
        readers = [Reader(live, agent.auth) for _ in range(2)]
        assert [r.status for r in readers] == [200, 200]
        refused = Reader(live, agent.auth)
        assert refused.status == 429 and refused.error()["error"]["code"] == "rate_limited"
        assert int(refused.resp.getheader("Retry-After")) >= 1
        _other_owner, other = _agent(live.world)
        third = _agent(live.world)[1]
        others = Reader(live, other.auth)
        assert others.status == 200  # another token: its own allowance...
        past_process = Reader(live, third.auth)
        assert past_process.status == 429  # ...until the process's bound

        with live.store.session() as db:
            tokens.revoke_token(db, authenticate(db, owner.access_token), agent.token_id)
        for reader in readers:  # both streams end (the server closes them) within the deadline
            while (msg := reader.next()) is not None:  # at most the revocation's own event first
                assert msg.data is None or msg.event == "token.revoked", msg
        assert Reader(live, agent.auth).status == 401


def test_a_closed_stream_gives_its_slot_back(make_settings, make_store) -> None:
    with _serve(make_settings, make_store, event_stream_max_per_token=1) as live:
        _owner, agent = _agent(live.world)
        first = Reader(live, agent.auth)
        assert first.next().comments == ["connected"]
        first.close()  # nothing is written to it: the server notices the closed socket by itself
        assert _open_when_free(live, agent.auth).status == 200


def test_keepalive_comments_arrive_at_the_configured_interval(make_settings, make_store) -> None:
    with _serve(make_settings, make_store, event_stream_keepalive=0.3) as live:
        _owner, agent = _agent(live.world)
        reader = Reader(live, agent.auth)
        assert reader.next().comments == ["connected"]
        opened = time.monotonic()
        beats = []
        while len(beats) < 3:
            msg = reader.next()
            assert msg is not None and msg.comments == ["keepalive"]
            beats.append(time.monotonic())
        gaps = [b - a for a, b in zip([opened] + beats, beats)]
        assert all(0.2 <= gap <= 0.9 for gap in gaps), gaps
        reader.close()


def test_types_filter_and_tenancy(live: Server) -> None:
    owner, agent = _agent(live.world)
    sibling_inbox = live.world.inbox(owner)
    stranger, stranger_agent = _agent(live.world)
    reader = Reader(live, agent.auth, query="types=message.deleted,message.updated")
    session_reader = Reader(live, owner.auth, query=f"inbox_id={agent.inbox_id}&types=message.updated")
    assert reader.next().comments == ["connected"] and session_reader.next().comments == ["connected"]

    _emit(live.store, owner, sibling_inbox)  # the same tenant, another inbox
    _emit(live.store, stranger, stranger_agent.inbox_id)  # another tenant
    _emit(live.store, owner, agent.inbox_id, type_="message.sent")  # a type not asked for
    deleted = _emit(live.store, owner, agent.inbox_id, type_="message.deleted")
    marker = _emit(live.store, owner, agent.inbox_id)
    assert [reader.next_event().data["resource_id"] for _ in range(2)] == deleted + marker
    assert session_reader.next_event().data["resource_id"] == marker[0]
    reader.close()
    session_reader.close()

    other_tenants = Reader(live, stranger.auth, query=f"inbox_id={agent.inbox_id}")
    assert other_tenants.status == 404
    mismatch = Reader(live, stranger_agent.auth, query=f"inbox_id={agent.inbox_id}")
    assert mismatch.status == 403 and mismatch.error()["error"]["code"] == "inbox_mismatch"
    unknown = Reader(live, agent.auth, query="types=no.such")
    assert unknown.status == 400 and unknown.error()["error"]["field"] == "types"
    bad_resume = Reader(live, {**agent.auth, "Last-Event-ID": "evt_x"})
    assert bad_resume.status == 400 and bad_resume.error()["error"]["field"] == "Last-Event-ID"
    assert Reader(live, {}).status == 401


def test_streams_end_when_the_server_shuts_down(live: Server) -> None:
    _owner, agent = _agent(live.world)
    reader = Reader(live, agent.auth)
    assert reader.next().comments == ["connected"]
    stopping = threading.Event()
    stream.watch_server(lambda: not stopping.is_set())
    try:
        stopping.set()  # what gunicorn's SIGTERM does to worker.alive
        assert reader.next() is None
    finally:
        stream.watch_server(lambda: True)


def test_one_transaction_with_events_of_several_inboxes_reaches_each_stream(live: Server) -> None:
    owner, agent = _agent(live.world)
    sibling = live.world.agent(owner, live.world.inbox(owner), ["email:read"])
    readers = {agent.inbox_id: Reader(live, agent.auth), sibling.inbox_id: Reader(live, sibling.auth)}
    assert all(r.next().comments == ["connected"] for r in readers.values())
    with live.store.session() as db:  # one commit, one wake-up naming both inboxes
        for i in range(6):
            inbox_id = agent.inbox_id if i % 2 else sibling.inbox_id
            events.emit(db, "message.updated", tenant_id=owner.tenant_id, inbox_id=inbox_id, resource_id=f"msg_{i}")
    for inbox_id, reader in readers.items():
        got = [reader.next_event().data for _ in range(3)]
        assert [e["inbox_id"] for e in got] == [inbox_id] * 3
        reader.close()


def test_a_paused_tokens_stream_and_a_logged_out_sessions_stream_end(live: Server) -> None:
    from appliance.services.identity import accounts

    owner, agent = _agent(live.world)
    person = live.world.login(owner.email)  # a second session of the owner, to log out
    by_token = Reader(live, agent.auth)
    by_session = Reader(live, person.auth, query=f"inbox_id={agent.inbox_id}")
    assert by_token.next().comments == ["connected"] and by_session.next().comments == ["connected"]
    with live.store.session() as db:
        tokens.update_token(db, authenticate(db, owner.access_token), agent.token_id, action="pause", scopes=None)
        accounts.log_out(db, authenticate(db, person.access_token).session)
    for reader in (by_token, by_session):
        while (msg := reader.next()) is not None:  # the server ends both (at most the pause's event first)
            assert msg.data is None or msg.event.startswith("token."), msg
    paused = Reader(live, agent.auth)
    assert paused.status == 403 and paused.error()["error"]["code"] == "token_paused"
