"""Retention (issue 23 point 6): the policy is set through the API, the worker applies it daily
through the schedule; old messages and events go; the oldest audit entries are pruned through
the one narrow door the triggers leave (a prune mark written, used and removed in one
transaction), leaving a signed anchor so the rest still verifies, while any other deletion,
even under a forged mark, is still named by verify."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from appliance import clock
from appliance.models import AuditEntry, Event, Inbox, Message
from appliance.models.compliance import AuditPrune
from appliance.services.governance import audit, retention
from appliance.services.mail import inbound
from appliance.worker import Worker


def _run_worker(store, settings) -> None:
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()


def _receive(store, inbox_id: str, address: str, subject: str) -> None:
    raw = (f"From: a@remote.test\r\nTo: {address}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n"
           "\r\nbody\r\n").encode()
    with store.session() as db:
        inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="a@remote.test",
                        envelope_to={inbox_id: address})


def _rename(client, owner, inbox_id: str, times: int) -> None:
    for n in range(times):
        assert client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": f"Desk {n}"},
                            headers=owner.auth).status_code == 200


def test_policy_is_validated_and_applied_daily_by_the_worker(client, world, store, settings):
    owner = world.owner()
    member = world.member(owner)
    inbox_id = world.inbox(owner)
    with store.session() as db:
        address = db.get(Inbox, inbox_id).address
    _receive(store, inbox_id, address, "old")
    _rename(client, owner, inbox_id, 3)

    assert client.get("/v1/compliance/retention/", headers=owner.auth).json["messages_days"] is None
    assert client.put("/v1/compliance/retention/", headers=member.auth, json={"messages_days": 10}).status_code == 403
    assert client.put("/v1/compliance/retention/", headers=owner.auth, json={"audit_days": 5}).status_code == 400
    policy = {"messages_days": 10, "events_days": 10, "audit_days": 30}
    answer = client.put("/v1/compliance/retention/", headers=owner.auth, json=policy)
    assert answer.status_code == 200 and {k: answer.json[k] for k in policy} == policy

    _run_worker(store, settings)  # not due yet: nothing goes
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Message).where(Message.tenant_id == owner.tenant_id)) == 1

    clock.advance(dt.timedelta(days=40))
    owner = world.login(owner.email)
    _receive(store, inbox_id, address, "new")
    _rename(client, owner, inbox_id, 2)
    _run_worker(store, settings)
    with store.session() as db:
        subjects = list(db.scalars(select(Message.subject).where(Message.tenant_id == owner.tenant_id)))
        old_events = db.scalar(select(func.count()).select_from(Event).where(
            Event.tenant_id == owner.tenant_id, Event.occurred_at < clock.utcnow() - dt.timedelta(days=10)))
        seqs = list(db.scalars(select(AuditEntry.seq).where(AuditEntry.chain == owner.tenant_id)
                               .order_by(AuditEntry.seq)))
        pruned = db.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.chain == owner.tenant_id, AuditEntry.action == retention.PRUNED))
        marks = db.scalar(select(func.count()).select_from(AuditPrune))
    assert subjects == ["new"] and old_events == 0
    assert seqs[0] > 1 and pruned == 1 and marks == 0  # the mark lives only inside the pruning transaction
    state = client.get("/v1/compliance/retention/", headers=owner.auth).json
    assert state["last_result"]["messages"] == 1 and state["last_result"]["audit_entries"] >= 4, state
    verdict = client.get("/v1/audit/verify/", headers=owner.auth).json
    assert verdict["ok"], verdict

    _run_worker(store, settings)  # the daily run re-armed a day later, not for every missed day
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.type == "compliance.retention_applied", Event.tenant_id == owner.tenant_id)) == 1


def test_pruning_verifies_and_other_deletions_are_still_named(client, world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    _rename(client, owner, inbox_id, 4)
    clock.advance(dt.timedelta(days=40))
    owner = world.login(owner.email)
    _rename(client, owner, inbox_id, 4)
    chain = owner.tenant_id
    with store.session() as db:
        removed = retention.prune_audit(db, settings.secret_key, chain, clock.utcnow() - dt.timedelta(days=30))
    assert removed == 4
    with store.session() as db:
        verdict = audit.verify(db, settings.secret_key, chain)
        first = db.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.chain == chain))
    assert verdict.ok, verdict.to_dict()

    with store.session() as db:  # without a mark the triggers still refuse every DELETE
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("DELETE FROM audit_entries WHERE chain = :c AND seq = :s"), {"c": chain, "s": first})
    with store.session() as db:  # someone forges a mark to cut more of the head: verify names the gap
        db.add(AuditPrune(chain=chain, through_seq=first + 1, at=clock.utcnow()))
        db.flush()
        db.execute(text("DELETE FROM audit_entries WHERE chain = :c AND seq <= :s"), {"c": chain, "s": first + 1})
        db.execute(text("DELETE FROM audit_prunes"))
    with store.session() as db:
        verdict = audit.verify(db, settings.secret_key, chain)
    assert not verdict.ok and verdict.broken_at == first and "deleted" in verdict.reason, verdict.to_dict()
