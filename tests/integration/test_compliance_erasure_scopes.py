"""Erasure of a user and of a whole tenant (issue 23 point 5): after the grace period the worker
removes the account (scope user) or every row of the tenant (scope tenant); a scan of every table
then finds neither the person's address nor the tenant's id in any row but the erasure's own
record and the audit chain's ids, and the chain still verifies with its personal data cleared."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from appliance import clock
from appliance.models import AuditEntry, Base, User
from appliance.models.compliance import ComplianceDeletion
from appliance.services.governance import audit
from appliance.worker import Worker
from tests.integration.test_compliance_erasure import scan


def _run_worker(store, settings) -> None:
    worker = Worker(store, settings)
    try:
        worker.run_until_idle()
    finally:
        worker.close()


def _verify(store, settings, chain: str) -> audit.Verdict:
    """The chain verified after the worker's daily checkpoint (the test moved the clock a week)."""
    with store.session() as db:
        audit.checkpoint_due(db, settings.secret_key)
    with store.session() as db:
        return audit.verify(db, settings.secret_key, chain)


def test_a_user_erases_their_account(client, world, store, settings, database_url):
    owner = world.owner()
    member = world.member(owner)
    assert client.post("/v1/compliance/deletion/", headers=owner.auth, json={"scope": "user"}).status_code == 409
    answer = client.post("/v1/compliance/deletion/", headers=member.auth, json={"scope": "user"})
    assert answer.status_code == 202, answer.json
    assert client.post("/auth/login/", json={"email": member.email, "password": "wrong password!"}).status_code == 401
    assert scan(database_url, member.email)[member.email]
    clock.advance(dt.timedelta(days=7, minutes=1))
    _run_worker(store, settings)
    with store.session() as db:
        assert db.get(User, member.user_id) is None
        assert db.get(ComplianceDeletion, answer.json["deletion_id"]).status == "completed"
    assert scan(database_url, member.email)[member.email] == []
    assert _verify(store, settings, owner.tenant_id).ok and _verify(store, settings, "box").ok
    assert world.login(owner.email)  # the rest of the tenant is untouched


def test_an_owner_erases_the_whole_tenant(client, world, store, settings, database_url):
    owner = world.owner()
    member = world.member(owner)
    sender = world.sender(owner)
    assert client.post("/v1/messages/", headers=sender.auth, json={
        "to": [{"email": "dana@remote.test"}], "subject": "Hi", "text_body": "hello"}).status_code == 201
    assert client.post("/v1/compliance/deletion/", headers=member.auth, json={"scope": "tenant"}).status_code == 403
    answer = client.post("/v1/compliance/deletion/", headers=owner.auth, json={"scope": "tenant"})
    assert answer.status_code == 202, answer.json
    bystander = world.owner()
    clock.advance(dt.timedelta(days=7, minutes=1))
    _run_worker(store, settings)

    with store.session() as db:
        for table in Base.metadata.sorted_tables:
            if "tenant_id" in table.c and table.name not in ("audit_entries", "compliance_deletions", "events"):
                left = db.execute(select(table).where(table.c.tenant_id == owner.tenant_id)).all()
                assert not left, table.name
        pii = list(db.scalars(select(AuditEntry.pii).where(AuditEntry.chain == owner.tenant_id)))
        assert db.get(ComplianceDeletion, answer.json["deletion_id"]).status == "completed"
    assert pii and all(p is None for p in pii[:-1])  # only the final entry has a summary: scope and counts
    assert "@" not in str(pii[-1])
    found = scan(database_url, owner.email, member.email, "dana@remote.test")
    assert found == {owner.email: [], member.email: [], "dana@remote.test": []}, found
    assert _verify(store, settings, owner.tenant_id).ok
    assert world.login(bystander.email)  # another tenant is untouched
