"""Issue 22: after a mixed workload (a few hundred sends, local deliveries, bounces, received
batches, held sends decided either way, deletions), every usage figure equals a recount from the
raw tables: sends from the message.sent events (one per recipient), receives from the
message.received events, mailbox bytes from the stored messages' sizes, approvals from their rows.
"""
from __future__ import annotations

import random
from collections import Counter

from sqlalchemy import select

from appliance.models import Approval, Event, Message
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.world import World


def _recount(store, tenant_id: str) -> dict[str, Counter]:
    out = {"sends": Counter(), "messages_received": Counter(), "mailbox_storage_bytes": Counter(),
           "approvals": Counter()}
    with store.read_sessions() as db:
        for event in db.scalars(select(Event).where(Event.tenant_id == tenant_id,
                                                    Event.type.in_(["message.sent", "message.received"]))):
            if event.type == "message.sent":
                out["sends"][event.inbox_id] += len(event.payload["recipients"])
            else:
                out["messages_received"][event.inbox_id] += 1
        for inbox_id, size in db.execute(select(Message.inbox_id, Message.size).where(Message.tenant_id == tenant_id)):
            out["mailbox_storage_bytes"][inbox_id] += size
        for (inbox_id,) in db.execute(select(Approval.inbox_id).where(Approval.tenant_id == tenant_id)):
            out["approvals"][inbox_id] += 1
    return out


def _receive_batch(store, inbox_ids: list[str], n: int, rng: random.Random) -> None:
    """n messages through the group commit's one function, one transaction."""
    batch = [inbound.prepare(inbox_ids=rng.sample(inbox_ids, rng.randint(1, len(inbox_ids))),
                             raw=(f"From: x@sender.example\r\nSubject: batch {i}\r\nMessage-ID: <{rng.random()}@x>"
                                  f"\r\n\r\n{'word ' * rng.randint(1, 400)}\r\n").encode(),
                             envelope_from="x@sender.example", envelope_to={}) for i in range(n)]
    with store.writer_turn(), store.session() as db:
        inbound.store(db, batch, settings=store.settings)


def test_usage_equals_a_recount_after_a_mixed_workload(client, store, settings, world: World) -> None:
    rng = random.Random(22)
    owner, other = world.owner(), world.owner()
    a = world.sender(owner, "a@alpha.test")
    b = world.sender(owner, "b@alpha.test")
    held = world.agent(owner, b.inbox_id, ["email:send"], requires_approval=["email:send"])
    c_inbox = world.inbox(other, "c@beta.test")  # another tenant: its figures are its own
    hosted = ["a@alpha.test", "b@alpha.test", "c@beta.test", "nobody@beta.test"]  # the last one bounces
    worker = Worker(store, settings)
    messages: list[tuple[str, str]] = []
    try:
        for step in range(300):
            roll = rng.random()
            if roll < 0.6:
                sender = rng.choice([a, b])
                to = [{"email": e} for e in rng.sample(hosted, rng.randint(1, 3))]
                resp = client.post("/v1/messages/", json={"to": to, "subject": f"s{step}", "text_body": "x" * step},
                                   headers=sender.auth)
                assert resp.status_code == 201, resp.get_json()
                messages.append((resp.get_json()["message_id"], sender.inbox_id))
            elif roll < 0.7:
                resp = client.post("/v1/messages/", json={"to": [{"email": "c@beta.test"}], "text_body": "held"},
                                   headers=held.auth)
                assert resp.status_code == 202
            elif roll < 0.8:
                _receive_batch(store, [a.inbox_id, b.inbox_id, c_inbox], rng.randint(1, 5), rng)
            elif roll < 0.88 and messages:
                message_id, inbox_id = messages.pop(rng.randrange(len(messages)))
                resp = client.delete(f"/v1/messages/{message_id}/", query_string={"inbox_id": inbox_id},
                                     headers=owner.auth)
                assert resp.status_code == 204, resp.get_json()
            elif roll < 0.95:
                pending = client.get("/v1/approvals/", query_string={"status": "pending"},
                                     headers=owner.auth).get_json()["results"]
                for approval in pending[:2]:
                    verb = rng.choice(["approve", "reject"])
                    assert client.post(f"/v1/approvals/{approval['approval_id']}/{verb}/",
                                       headers=owner.auth).status_code == 204
            else:
                worker.run_until_idle()
        worker.run_until_idle()
    finally:
        worker.close()
    for person in (owner, other):
        expected = _recount(store, person.tenant_id)
        report = client.get("/v1/billing/usage/", headers=person.auth).get_json()
        for figure, per_inbox in expected.items():
            assert report[figure] == sum(per_inbox.values()), figure
            assert {i["inbox_id"]: i[figure] for i in report["inboxes"] if i[figure]} == \
                {k: v for k, v in per_inbox.items() if v}, figure
    mine = _recount(store, owner.tenant_id)
    assert sum(mine["sends"].values()) > 300 and sum(mine["messages_received"].values()) > 100
    assert sum(mine["approvals"].values()) > 10
    stats = client.get("/v1/stats/", headers=owner.auth).get_json()
    assert sum(stats["series"]["sends"]) == sum(mine["sends"].values())
    assert sum(stats["series"]["receives"]) == sum(mine["messages_received"].values())
    assert sum(stats["series"]["bounces"]) > 0
