"""Issue 22: a mailbox cap in enforce mode refuses inbound mail over real SMTP with 452 4.2.2
(temporary: the sender retries), deletes nothing, and lets the retry through once raised.
The same refusal crosses the socket between listener processes (CommitterService)."""
from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select

from appliance.models import Event, Message
from appliance.services.governance import usage
from appliance.services.mail import inbound
from smtp.committer import MAILBOX_FULL, CommitterService, RemoteCommitter, StoreRefused
from tests.integration.smtp_fixtures import client as smtp_client, message_bytes, smtp_listener, tls_files  # noqa: F401

BIG = "x" * 76 + "\r\n"  # one line; 5,200 of them make a message of ~406 KB


def _stored(store, inbox_id: str) -> list[str]:
    with store.read_sessions() as db:
        return list(db.scalars(select(Message.id).where(Message.inbox_id == inbox_id).order_by(Message.id)))


def _put_cap(client_, owner, inbox_id: str, limit_gb: float, mode: str = "enforce") -> None:
    resp = client_.put("/v1/billing/caps/mailbox/", json={"inbox_id": inbox_id, "limit_gb": limit_gb, "mode": mode},
                       headers=owner.auth)
    assert resp.status_code == 200, resp.get_json()


def test_the_next_message_over_a_1_mb_cap_gets_452_and_the_retry_passes_once_raised(
        world, store, client, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "full@quota.example")
    _put_cap(client, owner, inbox_id, 0.001)  # 1 MB
    address = smtp_listener()
    body = BIG * 5200
    with smtp_client(address) as smtp:
        for n in range(2):
            assert smtp.sendmail("a@sender.example", ["full@quota.example"],
                                 message_bytes(f"part {n}", "full@quota.example", body=body)) == {}
        kept = _stored(store, inbox_id)
        assert len(kept) == 2
        third = message_bytes("part 2", "full@quota.example", body=body)
        smtp.mail("a@sender.example")
        assert smtp.rcpt("full@quota.example")[0] == 250
        code, reply = smtp.data(third)
        assert (code, reply) == (452, b"4.2.2 Mailbox full; try again later")
    assert _stored(store, inbox_id) == kept  # nothing stored, nothing deleted
    with store.read_sessions() as db:
        sizes = db.scalar(select(func.sum(Message.size)).where(Message.inbox_id == inbox_id))
        assert usage.gauge(db, owner.tenant_id, usage.MAILBOX_BYTES, inbox_id) == sizes
        reached = [e.payload["threshold"] for e in db.scalars(select(Event).where(Event.type == "cap.reached"))]
    assert reached == [80]  # the second message passed 80% of the cap
    _put_cap(client, owner, inbox_id, 0.002)
    with smtp_client(address) as smtp:  # the sender's retry
        assert smtp.sendmail("a@sender.example", ["full@quota.example"], third) == {}
    assert _stored(store, inbox_id)[:2] == kept and len(_stored(store, inbox_id)) == 3


def test_allow_and_bill_never_refuses(world, store, client, smtp_listener) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "billed@quota.example")
    _put_cap(client, owner, inbox_id, 0.0001, mode="allow_and_bill")  # 100 KB
    address = smtp_listener()
    with smtp_client(address) as smtp:
        for n in range(2):
            assert smtp.sendmail("a@sender.example", ["billed@quota.example"],
                                 message_bytes(f"m{n}", "billed@quota.example", body=BIG * 1000)) == {}
    assert len(_stored(store, inbox_id)) == 2


def test_a_full_mailbox_is_refused_through_the_committer_of_several_processes(world, store, client) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "shared@quota.example")
    _put_cap(client, owner, inbox_id, 0.000001)  # 1,000 bytes
    parent, child = socket.socketpair()
    service = CommitterService(store, [parent])
    remote = RemoteCommitter(child)
    try:
        raw = message_bytes("too big", "shared@quota.example", body=BIG * 20)
        future = remote.submit(inbound.prepare(inbox_ids=[inbox_id], raw=raw, envelope_from="a@sender.example",
                                               envelope_to={}))
        with pytest.raises(StoreRefused) as refused:
            future.result(30)
        assert refused.value.reply == MAILBOX_FULL
    finally:
        remote.close()
        service.close()
    assert _stored(store, inbox_id) == []
