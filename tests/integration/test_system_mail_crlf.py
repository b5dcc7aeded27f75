"""Issue 14.2: every kind of mail the appliance sends leaves with CRLF line ends only.

The real worker delivers the appliance's own mail (a sign-up link, an approval notice) and an
agent's message to receivers that refuse a bare LF: another Gentbox's real listener (its own
store; it answers 550 5.6.0 to a bare LF) directly, and a private Postfix with
`smtpd_forbid_bare_newline = yes` (for every client, loopback included) relaying to that listener.
The recipient domain is found through MX records in the test DNS (dnsmasq). A DSN, which stays
in the sending inbox, is checked at the byte level like every queued message.
"""
from __future__ import annotations

import re
import shutil
import time

import pytest
from sqlalchemy import select

from appliance.config import Settings
from appliance.models import Inbox, Message, MessageRaw, SystemMail
from appliance.services.mail import outbound
from appliance.worker import Worker
from tests.conftest import _fast_settings
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings
from tests.integration.test_smtp_postfix import PrivatePostfix
from tests.world import World

BARE = re.compile(rb"(?<!\r)\n|\r(?!\n)")
PEER = "peer.example"


def assert_crlf_only(raw: bytes, what: str) -> None:
    found = BARE.search(raw)
    assert found is None, f"{what} has a bare line end at byte {found.start()}: {raw[:found.start() + 40]!r}"


@pytest.fixture
def peer(sqlite_template, tmp_path, make_store):
    """Another Gentbox (SQLite store of its own) hosting peer.example, its listener started later."""
    path = tmp_path / "peer" / "gentbox.db"
    path.parent.mkdir()
    shutil.copy(sqlite_template, path)
    # Strict about bare LF: today's only behaviour, a setting once `smtp_bare_newline` exists.
    strict = {"smtp_bare_newline": "strict"} if "smtp_bare_newline" in Settings.model_fields else {}
    settings = Settings(**_fast_settings(data_dir=path.parent, database_url=f"sqlite:///{path}",
                                         hostname="mx.peer.example", **strict))
    store = make_store(settings)
    world = World(store, settings)
    owner = world.owner("postmaster@elsewhere.example")
    for name in ("ada", "boss", "ann"):
        world.inbox(owner, f"{name}@{PEER}")
    return store, settings


@pytest.fixture
def strict_postfix():
    started: list[PrivatePostfix] = []

    def start(relay_to: tuple[str, int]) -> tuple[str, int]:
        instance = PrivatePostfix(relay_to)
        with (instance.config / "main.cf").open("a") as main_cf:  # refuse bare LF from loopback too
            main_cf.write("smtpd_forbid_bare_newline = yes\nsmtpd_forbid_bare_newline_exclusions =\n")
        started.append(instance)
        return instance.start()
    yield start
    for instance in started:
        instance.stop()


def arrived(store, count: int, timeout: float = 60) -> list[tuple[str, str, bytes]]:
    """Wait until the peer stored count messages: (inbox address, subject, raw bytes) each."""
    deadline = time.monotonic() + timeout
    while True:
        with store.read_sessions() as db:
            found = [(address, subject or "", bytes(raw)) for address, subject, raw in db.execute(
                select(Inbox.address, Message.subject, MessageRaw.raw)
                .join(Message, Message.inbox_id == Inbox.id).join(MessageRaw, MessageRaw.message_id == Message.id))]
        if len(found) >= count or time.monotonic() > deadline:
            return sorted(found)
        time.sleep(0.2)


@pytest.mark.parametrize("route", ["gentbox", "postfix"])
def test_every_kind_of_system_mail_reaches_a_strict_receiver(route, world, store, client, make_settings,
                                                              remote_world, peer, smtp_listener,
                                                              strict_postfix) -> None:
    peer_store, peer_settings = peer
    listener = smtp_listener(store=peer_store, settings=peer_settings)
    port = listener[1] if route == "gentbox" else strict_postfix(listener)[1]
    remote_world.domain(PEER, mx=[(10, "127.0.0.1")])
    settings = delivery_settings(make_settings, remote_world).model_copy(update={"delivery_port": port})

    world.signup_link(f"ada@{PEER}")  # a sign-up link
    owner = world.owner(f"boss@{PEER}")  # its own sign-up link too
    agent = world.sender(owner, "agent@crlf-test.example")
    held = world.agent(owner, agent.inbox_id, ["email:send"], requires_approval=["email:send"])
    unknown = [{"email": f"nobody@{PEER}"}] if route == "gentbox" else []  # refused at RCPT: a DSN
    resp = client.post("/v1/messages/", headers=held.auth, json={
        "to": [{"email": f"ann@{PEER}"}, *unknown], "subject": "Held", "text_body": "Line one.\nLine two.\n"})
    assert resp.status_code == 202, resp.get_data(as_text=True)  # the owner's approval notice is queued
    assert client.post(f"/v1/approvals/{resp.json['approval_id']}/approve/", headers=owner.auth).status_code == 204

    with store.session() as db:
        outbound.enqueue_system_mail(db, settings)
    with store.read_sessions() as db:
        kinds = sorted(m.kind for m in db.scalars(select(SystemMail)))
        queued = [(f"system mail {m.kind} to {m.rcpt_to}", bytes(m.raw)) for m in db.scalars(select(SystemMail))]
        queued += [(f"message {r.message_id}", bytes(r.raw)) for r in db.scalars(select(MessageRaw))]
    assert kinds == ["approval_held", "signup_link", "signup_link"]
    for what, raw in queued:  # byte level: no LF without CR, no CR without LF, in anything queued
        assert_crlf_only(raw, what)

    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()
    with store.read_sessions() as db:
        statuses = {m.rcpt_to: m.status for m in db.scalars(select(SystemMail))}
        messages = db.scalars(select(Message)).all()
        raws = {m.id: bytes(db.get(MessageRaw, m.id).raw) for m in messages}
    assert statuses == {f"ada@{PEER}": "sent", f"boss@{PEER}": "sent"}
    got = arrived(peer_store, 4)
    assert [(address, subject) for address, subject, _ in got] == [
        (f"ada@{PEER}", "Your Gentbox sign-up link"), (f"ann@{PEER}", "Held"),
        (f"boss@{PEER}", "An agent's message is waiting for your approval"),
        (f"boss@{PEER}", "Your Gentbox sign-up link")]
    for address, subject, raw in got:
        assert_crlf_only(raw, f"{subject!r} as {address} received it")
    if route == "gentbox":
        [dsn] = [m for m in messages if m.from_email.lower().startswith("mailer-daemon@")]
        assert f"nobody@{PEER}".encode() in raws[dsn.id]
        assert_crlf_only(raws[dsn.id], "the DSN")
