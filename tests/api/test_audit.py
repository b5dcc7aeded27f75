"""The audit log (issue 23, points 1-3): one entry per change, from the API and the web UI, in
the change's transaction; a hash chain per tenant that verify checks link by link; triggers that
refuse edits; personal data erasable without breaking the chain; read by owners and admins."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from api.framework import REGISTRY
from appliance import clock
from appliance.models import AuditEntry, AuditHead
from appliance.services.governance import audit
from tests.helpers import assert_error


def _entries(store, tenant_id: str | None = None) -> list[AuditEntry]:  # noqa: ANN001
    with store.session() as db:
        query = select(AuditEntry).order_by(AuditEntry.chain, AuditEntry.seq)
        if tenant_id is not None:
            query = query.where(AuditEntry.chain == tenant_id)
        return list(db.scalars(query))


def _count(store) -> int:  # noqa: ANN001
    with store.session() as db:
        return db.scalar(select(func.count()).select_from(AuditEntry))


def test_each_change_writes_one_entry_naming_actor_and_action_and_reads_write_none(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    calls = [
        ("POST", "/v1/tokens/", {"inbox_id": inbox_id, "label": "bot", "scopes": ["email:read"]}, owner.auth,
         "tokens.create_token", ("user", owner.user_id)),
        ("PATCH", "/v1/inboxes/{inbox_id}/", {"display_name": "Sales desk"}, owner.auth,
         "inboxes.update_inbox", ("user", owner.user_id)),
    ]
    for method, path, body, auth, action, (kind, actor_id) in calls:
        before = _count(store)
        resp = client.open(path.format(inbox_id=inbox_id), method=method, json=body, headers=auth)
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)
        entries = _entries(store, owner.tenant_id)
        assert _count(store) == before + 1
        last = entries[-1]
        assert (last.action, last.actor_kind, last.actor_id, last.edge) == (action, kind, actor_id, "api")
        assert last.pii["ip"] and last.request_id == resp.headers["X-Request-Id"]
    token = _entries(store, owner.tenant_id)[0]
    assert token.resource_type == "tokens" and token.resource_id.startswith("tok_")
    assert token.pii["changes"]["scopes"] == ["email:read"]
    before = _count(store)
    for path in ("/v1/inboxes/", f"/v1/inboxes/{inbox_id}/", "/v1/tokens/", "/v1/audit/"):
        assert client.get(path, headers=owner.auth).status_code == 200
    assert _count(store) == before  # reads write nothing
    # A refused change writes nothing either: its transaction rolled back with the entry.
    assert client.patch(f"/v1/inboxes/{inbox_id}/", json={"status": "nonsense"}, headers=owner.auth).status_code == 400
    assert _count(store) == before


def test_every_mutating_api_route_goes_through_the_audited_commit_point(app):
    """Entries are written by api/framework.py's commit point: a mutating rule that is not a
    declared endpoint (a bare Flask route) would escape the log, so none may exist."""
    declared = {spec.endpoint for spec in REGISTRY.values()}
    for rule in app.url_map.iter_rules():
        mutating = set(rule.methods or ()) - {"GET", "HEAD", "OPTIONS"}
        if mutating and (rule.rule.startswith("/v1/") or rule.rule.startswith("/auth/")):
            assert rule.endpoint in declared, f"{rule.rule} {mutating} is not declared with endpoint(...)"


def test_sign_ins_are_recorded_succeeded_and_failed_without_the_password(client, world, store):
    owner = world.owner()
    resp = client.post("/auth/login/", json={"email": owner.email, "password": "wrong password 123"})
    assert resp.status_code == 401
    resp = client.post("/auth/login/", json={"email": owner.email, "password": "correct horse battery staple"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    entries = _entries(store)
    failed = [e for e in entries if e.action == "access.log_in.failed"]
    ok = [e for e in entries if e.action == "access.log_in"]
    assert len(failed) == 1 and failed[0].pii["actor_label"] == owner.email and failed[0].chain == "box"
    assert len(ok) == 1 and (ok[0].chain, ok[0].actor_id) == (owner.tenant_id, owner.user_id)
    for entry in entries:
        assert "wrong password" not in str(entry.pii) and "battery" not in str(entry.pii)


def test_the_chain_verifies_and_each_kind_of_tampering_is_named(client, world, store, settings, backend):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    for n in range(5):
        assert client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": f"Desk {n}"},
                            headers=owner.auth).status_code == 200
    answer = client.get("/v1/audit/verify/", headers=owner.auth).get_json()
    assert answer["ok"] and answer["chains"][0]["entries"] == 5, answer
    entries = _entries(store, owner.tenant_id)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(e.prev_hash == p.hash for p, e in zip(entries, entries[1:]))

    with store.session() as db:  # the application cannot edit or delete an entry
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("UPDATE audit_entries SET action = 'x' WHERE seq = 2"))
    with store.session() as db:
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("DELETE FROM audit_entries WHERE seq = 2"))

    with _triggers_dropped(store, backend) as db:  # someone with the database's keys does it anyway
        db.execute(text("UPDATE audit_entries SET actor_id = 'usr_forged' WHERE chain = :c AND seq = 3"),
                   {"c": owner.tenant_id})
    verdict = _verify(store, settings, owner.tenant_id)
    assert (verdict.ok, verdict.broken_at) == (False, 3) and "edited" in verdict.reason
    with _triggers_dropped(store, backend) as db:
        db.execute(text("UPDATE audit_entries SET actor_id = :a WHERE chain = :c AND seq = 3"),
                   {"a": owner.user_id, "c": owner.tenant_id})
        db.execute(text("DELETE FROM audit_entries WHERE chain = :c AND seq = 2"), {"c": owner.tenant_id})
    verdict = _verify(store, settings, owner.tenant_id)
    assert (verdict.ok, verdict.broken_at) == (False, 2) and "deleted" in verdict.reason


def test_truncating_the_tail_is_detected_by_the_head_and_by_the_signed_checkpoint(client, world, store, settings,
                                                                                    backend):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    for n in range(3):
        client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": f"Desk {n}"}, headers=owner.auth)
    with store.session() as db:
        assert audit.checkpoint_due(db, settings.secret_key) >= 1
    assert _verify(store, settings, owner.tenant_id).ok
    with store.session() as db:
        assert audit.checkpoint_due(db, settings.secret_key) == 0  # one a day
    client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": "After"}, headers=owner.auth)
    with _triggers_dropped(store, backend) as db:  # cut the last entry
        db.execute(text("DELETE FROM audit_entries WHERE chain = :c AND seq = 5"), {"c": owner.tenant_id})
    verdict = _verify(store, settings, owner.tenant_id)
    assert not verdict.ok and "tail" in verdict.reason
    # Cutting the head row back too leaves the daily checkpoint missing once a day has passed.
    with _triggers_dropped(store, backend) as db:
        db.execute(text("DELETE FROM audit_entries WHERE chain = :c AND seq >= 4"), {"c": owner.tenant_id})
        last = db.scalar(select(AuditEntry).where(AuditEntry.chain == owner.tenant_id).order_by(AuditEntry.seq.desc()))
        db.execute(text("UPDATE audit_heads SET seq = :s, hash = :h WHERE chain = :c"),
                   {"s": last.seq, "h": last.hash, "c": owner.tenant_id})
    assert _verify(store, settings, owner.tenant_id).ok  # within the day nothing can tell...
    clock.advance(dt.timedelta(days=2))
    verdict = _verify(store, settings, owner.tenant_id)
    assert not verdict.ok and "checkpoint is missing" in verdict.reason  # ...after it, verify does


def test_erasing_personal_data_keeps_the_chain_verifying(client, world, store, settings, backend):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": "Alice Example"}, headers=owner.auth)
    with store.session() as db:  # what erasure does: clear the personal data, nothing else
        db.execute(text("UPDATE audit_entries SET pii = NULL WHERE chain = :c"), {"c": owner.tenant_id})
    assert _verify(store, settings, owner.tenant_id).ok
    assert "Alice" not in str([e.pii for e in _entries(store, owner.tenant_id)])
    with store.session() as db:  # but nothing else may change with it
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text("UPDATE audit_entries SET pii = NULL, action = 'x' WHERE chain = :c"),
                       {"c": owner.tenant_id})


def test_owners_and_admins_read_their_tenants_log_only(client, world, store):
    alice, bob = world.owner(), world.owner()
    inbox_id = world.inbox(alice)
    client.patch(f"/v1/inboxes/{inbox_id}/", json={"display_name": "Desk"}, headers=alice.auth)
    page = client.get("/v1/audit/", headers=alice.auth).get_json()
    assert [r["action"] for r in page["results"]] == ["inboxes.update_inbox"]
    assert page["results"][0]["actor"] == {"kind": "user", "id": alice.user_id, "label": alice.email}
    assert client.get("/v1/audit/", headers=bob.auth).get_json()["results"] == []
    admin, member = world.member(alice, "admin"), world.member(alice, "member")
    assert len(client.get("/v1/audit/", headers=admin.auth).get_json()["results"]) == 1
    assert_error(client.get("/v1/audit/", headers=member.auth), 403, "manager_required")
    agent = world.agent(alice, inbox_id, ["email:read"])
    assert_error(client.get("/v1/audit/", headers=agent.auth), 403, "session_required")
    filtered = client.get("/v1/audit/", headers=alice.auth, query_string={"action": "tokens."}).get_json()
    assert filtered["results"] == []


# --- helpers -----------------------------------------------------------------------------------
def _verify(store, settings, chain: str) -> audit.Verdict:  # noqa: ANN001
    with store.session() as db:
        return audit.verify(db, settings.secret_key, chain)


class _triggers_dropped:
    """The triggers taken away for one transaction, as someone with the database's own keys
    could: what verify must still catch."""

    def __init__(self, store, backend: str) -> None:  # noqa: ANN001
        self.store, self.backend = store, backend

    def __enter__(self):  # noqa: ANN204
        self.ctx = self.store.session()
        self.db = self.ctx.__enter__()
        if self.backend == "postgres":
            self.db.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
        else:
            self.saved = list(self.db.execute(text(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entries'")).scalars())
            self.db.execute(text("DROP TRIGGER audit_entries_no_update"))
            self.db.execute(text("DROP TRIGGER audit_entries_no_delete"))
        return self.db

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        if self.backend == "postgres":
            self.db.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only"))
        else:
            for sql in self.saved:
                self.db.execute(text(sql))
        self.ctx.__exit__(*exc)


def test_a_tokens_first_use_from_each_new_address_is_noted_once(client, world, store):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read"])
    for ip in ("198.51.100.7", "198.51.100.7", "203.0.113.9", "198.51.100.7"):
        resp = client.get("/v1/messages/", headers=agent.auth, environ_overrides={"REMOTE_ADDR": ip})
        assert resp.status_code == 200
    noted = [e for e in _entries(store, owner.tenant_id) if e.action == "tokens.first_use_from_ip"]
    assert [(e.actor_id, e.pii["ip"]) for e in noted] == [(agent.token_id, "198.51.100.7"),
                                                          (agent.token_id, "203.0.113.9")]


def test_a_send_is_audited_without_its_text_or_attachment_bytes(client, world, store):
    from tests.api.test_send import sending_box
    box = sending_box(world, world.owner(), "sales@audited.test")
    body = {"to": [{"email": "carol@remote.test"}], "subject": "Numbers", "text_body": "The secret plan is blue",
            "attachments": [{"filename": "n.txt", "content_type": "text/plain", "content_base64": "QUJDREVGR0g="}]}
    assert client.post("/v1/messages/", json=body, headers=box.agent.auth).status_code == 201
    [entry] = [e for e in _entries(store, box.owner.tenant_id) if e.action == "messages.send_message"]
    assert entry.pii["changes"]["text_body"] == {"characters": len(body["text_body"])}
    assert "secret plan" not in str(entry.pii) and "QUJD" not in str(entry.pii)
    assert entry.pii["changes"]["to"] == [{"email": "carol@remote.test"}]
