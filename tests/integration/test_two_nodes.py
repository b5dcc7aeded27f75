"""Issue 26.4: two nodes on one PostgreSQL, each running web, smtp, worker and imap with its own
data dir (tests/integration/two_nodes.py), work as one appliance: mail sent through both APIs
leaves exactly once, mail into both listeners is stored once, a worker killed mid-delivery loses
nothing, sessions and rate limits hold across nodes, an alert fires once, IMAP sees one mailbox."""
from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import func, select

from appliance.models import Message, OutboundQueue, WebhookDelivery
from tests.integration.imap_fixtures import client_context
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.test_worker_processes import queue_messages
from tests.integration.two_nodes import two_nodes, wait_for  # noqa: F401
from tests.integration.webhook_receiver import Receiver
from tests.world import PASSWORD

pytestmark = pytest.mark.parametrize("backend", ["postgres"])  # several nodes need a shared server
MESSAGES = 2000  # the number, for both directions
KILL_MESSAGES = 600
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def send_through(nodes, agent, count: int, *, threads: int = 8) -> list[str]:
    """count sends through the nodes' APIs in turn (with two: n even node a, odd node b); their subjects.
    Each send carries an Idempotency-Key, so a send whose answer was lost (a connection reset on
    this loaded machine) is tried again as a careful client would, without sending it twice."""
    clients = [httpx.Client(base_url=node.base, headers=agent.auth, timeout=120) for node in nodes]
    retried = []

    def send(n: int) -> str:
        subject = f"Load {n}"
        body = {"to": [{"email": "ann@partner.example"}], "subject": subject,
                "text_body": f"Message number {n}.\n" + "x" * 500}
        for attempt in range(5):
            try:
                resp = clients[(n + attempt) % len(clients)].post("/v1/messages/", json=body,
                                                       headers={"Idempotency-Key": f"load-{n}"})
                break
            except httpx.TransportError:
                retried.append(n)
        assert resp.status_code == 201, resp.text
        return subject
    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(send, range(count)))
    finally:
        print(f"\n{len(retried)} send(s) tried again after a lost answer")
        for client in clients:
            client.close()


def subjects_received(receiver) -> Counter:
    return Counter(d.message()["Subject"] for d in receiver.deliveries)


def outbound_open(store) -> int:
    """Queue rows of API sends not done yet (the owner's sign-up email has no message)."""
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(OutboundQueue).where(
            OutboundQueue.status != "done", OutboundQueue.message_id.is_not(None)))


def test_mail_sent_through_both_apis_leaves_exactly_once(two_nodes, world, store, remote_world) -> None:
    receiver = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, receiver)])
    agent = world.sender(world.owner())
    nodes = two_nodes()
    started = time.monotonic()
    sent = send_through(nodes, agent, MESSAGES)
    receiver.wait_for(MESSAGES, timeout=300)
    wait_for(lambda: outbound_open(store) == 0, 60, "queue not drained", nodes[0].logs)
    print(f"\n{MESSAGES} API sends through two nodes delivered in {time.monotonic() - started:.1f} s")
    received = subjects_received(receiver)
    assert set(received) == set(sent) and len(sent) == MESSAGES
    assert max(received.values()) == 1, received.most_common(3)  # both workers claimed, none twice
    assert len(receiver.deliveries) == MESSAGES


def smtp_into(nodes, address: str, count: int, *, sessions: int = 8) -> list[str]:
    """count messages into the nodes' listeners over `sessions` SMTP sessions (nodes in turn);
    the Message-IDs each listener answered 250 to the final dot."""
    def session(k: int) -> list[str]:
        accepted = []
        with smtplib.SMTP("127.0.0.1", nodes[k % len(nodes)].smtp_port, local_hostname="client.sender.example",
                          timeout=120) as smtp:
            for n in range(k, count, sessions):
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "Bo <bo@sender.example>", address, f"In {n}"
                msg["Message-ID"] = f"<in-{n}@sender.example>"
                msg.set_content(f"Inbound number {n}.\n" + "y" * 2000)
                smtp.send_message(msg)  # raises unless 250
                accepted.append(f"in-{n}@sender.example")
        return accepted
    with ThreadPoolExecutor(sessions) as pool:
        return [mid for found in pool.map(session, range(sessions)) for mid in found]


def test_mail_into_both_listeners_is_stored_once(two_nodes, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with store.read_sessions() as db:
        address = _address(db, inbox_id)
    nodes = two_nodes()
    started = time.monotonic()
    accepted = smtp_into(nodes, address, MESSAGES)
    print(f"\n{MESSAGES} messages into two listeners stored in {time.monotonic() - started:.1f} s")
    assert len(accepted) == MESSAGES
    with store.read_sessions() as db:
        stored = Counter(h.strip("<>") for h in db.scalars(select(Message.message_id_header).where(
            Message.inbox_id == inbox_id, Message.direction == "inbound")))
    assert set(stored) == set(accepted)
    assert max(stored.values()) == 1, stored.most_common(3)


def _address(db, inbox_id: str) -> str:  # noqa: ANN001
    from appliance.models import Inbox
    return db.get(Inbox, inbox_id).address


def leased_by(store, pid: int) -> int:
    """Queue rows the worker process `pid` holds (claimed, outcome not recorded)."""
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(OutboundQueue).where(
            OutboundQueue.status == "delivering", OutboundQueue.lease_owner.like(f"%:{pid}:%")))


def _stopped_holding_a_claim(store, pid: int) -> bool:  # noqa: ANN001
    """Stop the worker; True (left stopped) when it holds a claim, else let it go on. Checking a
    running worker raced with it: it could record its outcomes between the check and the kill."""
    os.kill(pid, signal.SIGSTOP)
    if leased_by(store, pid) > 0:
        return True
    os.kill(pid, signal.SIGCONT)
    return False


def test_a_node_worker_killed_mid_delivery_loses_nothing(two_nodes, world, store, settings, remote_world) -> None:
    receiver = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, receiver)])
    # Queued before the nodes start (through the send service, as the API does), so that both
    # workers start on a backlog and node a's is surely mid-delivery when it is killed.
    sent = queue_messages(world, store, settings, KILL_MESSAGES, "ann@partner.example")
    a, b = two_nodes(GENTBOX_DELIVERY_CONCURRENCY="4")
    pid = a.procs["worker"].pid
    wait_for(lambda: len(receiver.deliveries) >= 100 and _stopped_holding_a_claim(store, pid), 180,
             "node a's worker never held a claim", a.logs)
    a.kill("worker")  # stopped (SIGSTOP) while it held a claim, so it recorded nothing in between
    in_flight = leased_by(store, pid)  # frozen now: nobody records outcomes for a dead worker
    delivered_at_kill = len(receiver.deliveries)
    # What its delivery sessions held (one message per session and thread today): the bound below.
    assert in_flight >= 1
    receiver.wait_for(KILL_MESSAGES, timeout=300)  # node b's worker takes a's rows once their lease ends
    wait_for(lambda: outbound_open(store) == 0, 120, "queue not drained", a.logs)
    received = Counter(d.message()["Message-ID"] for d in receiver.deliveries)
    assert set(received) == set(sent)  # nothing lost
    duplicates = sum(n - 1 for n in received.values())
    print(f"\nworker killed after {delivered_at_kill} deliveries with {in_flight} row(s) in flight; "
          f"{duplicates} message(s) delivered twice")
    assert delivered_at_kill < KILL_MESSAGES  # it was killed mid-way, not after the work was done
    assert duplicates <= in_flight, received.most_common(5)
    assert b.procs["worker"].poll() is None


def test_sessions_rate_limits_alerts_and_imap_are_shared(two_nodes, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["alerts:read", "alerts:write"])
    with store.read_sessions() as db:
        address = _address(db, inbox_id)
    hook = Receiver(secrets=[])
    a, b = two_nodes(GENTBOX_RATE_LIMIT_WAITLIST="6")
    try:
        # An API session made on node a works on node b, and its logout on b ends it on a.
        login = httpx.post(f"{a.base}/auth/login/", json={"email": owner.email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert httpx.get(f"{b.base}/v1/users/me/", headers=bearer).json()["email"] == owner.email
        assert httpx.post(f"{b.base}/auth/logout/", headers=bearer).status_code == 204
        assert httpx.get(f"{a.base}/v1/users/me/", headers=bearer).status_code == 401
        # A web UI sign-in (cookie) on node a is a sign-in on node b.
        with httpx.Client(base_url=a.base) as browser:
            csrf = CSRF_FIELD.search(browser.get("/logout/").text).group(1)
            signed_in = browser.post("/login/", data={"email": owner.email, "password": PASSWORD,
                                                      "csrf_token": csrf})
            assert signed_in.status_code == 303, signed_in.text[:300]
            cookie = browser.cookies["gentbox_session"]
        with httpx.Client(base_url=b.base, cookies={"gentbox_session": cookie}, follow_redirects=True) as other:
            page = other.get("/admin/")
        assert page.status_code == 200 and page.url.path.startswith("/admin/"), page.url  # not /login/
        assert owner.email in page.text
        # Rate limits count across nodes: 6 waitlist requests an hour per address, whichever node.
        answers = [httpx.post(f"{(a, b)[n % 2].base}/v1/waitlist/", json={"email": f"w{n}@example.com"})
                   .status_code for n in range(8)]
        assert 429 not in answers[:6] and answers[6:] == [429, 429], answers

        # An alert fires once per event although both workers tail the events.
        made = httpx.post(f"{a.base}/v1/alerts/", headers=agent.auth, json={
            "events": ["message.received"], "delivery": {"type": "webhook", "target": hook.url}})
        assert made.status_code == 201, made.text
        hook.secrets.append(made.json()["secret"])
        accepted = smtp_into((a, b), address, 40, sessions=4)
        wait_for(lambda: len(hook.accepted()) >= 40, 120, "webhooks not delivered", a.logs)
        with store.read_sessions() as db:
            wait_for(lambda: db.scalar(select(func.count()).select_from(WebhookDelivery).where(
                WebhookDelivery.status != "succeeded")) == 0, 60, "deliveries pending", a.logs)
        assert len(hook.accepted()) == 40 and max(hook.accepted().values()) == 1, hook.accepted().most_common(3)
        assert all(h.verified for h in hook.hits) and len(hook.hits) == 40

        # IMAP on either node sees the same mailbox; a flag set through one is seen through the other.
        seen = {}
        for node in (a, b):
            imap = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=60)
            imap.starttls(client_context())
            imap.login(address, PASSWORD)
            imap.select("INBOX")
            _typ, data = imap.uid("SEARCH", None, "ALL")
            seen[node.name] = data[0].split()
            if node is a:
                imap.uid("STORE", seen["a"][0], "+FLAGS", "(\\Flagged)")
            else:
                _typ, flagged = imap.uid("SEARCH", None, "FLAGGED")
                assert flagged[0].split() == [seen["a"][0]]
            imap.logout()
        assert seen["a"] == seen["b"] and len(seen["a"]) == len(accepted) == 40
    finally:
        hook.stop()
