"""Issue 14.15, roles for what comes: an owner or admin grants a `member` specific inboxes
(PUT /v1/inboxes/{id}/members/, contract section 10), where the member then reads and sends with
a session; and the appliance or a workflow acts inside a tenant as itself (Principal.system,
Principal.workflow), not as a faked user. Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import argparse

import pytest
from sqlalchemy import select

from appliance.errors import ForbiddenError, NotFoundError
from appliance.models import Event, Inbox
from appliance.services.domains import domains
from appliance.services.governance import approvals
from appliance.services.identity import inboxes, members, operators
from appliance.services.identity.auth import Principal, authenticate, inbox_for, require_manager
from tests.api.test_send import sending_box
from tests.helpers import assert_error

HELLO = {"to": [{"email": "carol@remote.test"}], "subject": "From a member", "text_body": "Hello"}


@pytest.fixture
def team(world):
    """An owner with two sending inboxes and a member granted nothing yet."""
    owner = world.owner()
    granted = sending_box(world, owner, "sales@alpha.test")
    other = sending_box(world, owner, "ops@alpha.test")
    return owner, granted, other, world.member(owner)


def grant(client, who, inbox_id: str, user_ids: list[str]):
    return client.put(f"/v1/inboxes/{inbox_id}/members/", json={"user_ids": user_ids}, headers=who.auth)


def test_a_granted_member_reads_and_sends_in_that_inbox_only(client, team):
    owner, granted, other, member = team
    received = client.post("/v1/messages/", json=HELLO, headers=granted.agent.auth).json["message_id"]
    q = {"inbox_id": granted.inbox_id}
    assert_error(client.get("/v1/messages/", query_string=q, headers=member.auth), 404, "not_found")
    resp = grant(client, owner, granted.inbox_id, [member.user_id])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json == {"inbox_id": granted.inbox_id, "user_ids": [member.user_id]}
    assert client.get(f"/v1/inboxes/{granted.inbox_id}/members/", headers=owner.auth).json["user_ids"] == [
        member.user_id]
    listed = client.get("/v1/messages/", query_string=q, headers=member.auth)
    assert listed.status_code == 200 and [m["message_id"] for m in listed.json["results"]] == [received]
    assert client.get(f"/v1/messages/{received}/", query_string=q, headers=member.auth).status_code == 200
    sent = client.post("/v1/messages/", json={**HELLO, "inbox_id": granted.inbox_id}, headers=member.auth)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    # The member sees only the granted inbox; the other one is not found, for reading or sending.
    assert [i["inbox_id"] for i in client.get("/v1/inboxes/", headers=member.auth).json["results"]] == [
        granted.inbox_id]
    assert client.get(f"/v1/inboxes/{granted.inbox_id}/", headers=member.auth).status_code == 200
    assert_error(client.get(f"/v1/inboxes/{other.inbox_id}/", headers=member.auth), 404, "not_found")
    assert_error(client.get("/v1/messages/", query_string={"inbox_id": other.inbox_id}, headers=member.auth),
                 404, "not_found", field="inbox_id")
    assert_error(client.post("/v1/messages/", json={**HELLO, "inbox_id": other.inbox_id}, headers=member.auth),
                 404, "not_found", field="inbox_id")
    # Taking the grant away ends it at once.
    assert grant(client, owner, granted.inbox_id, []).json["user_ids"] == []
    assert_error(client.get("/v1/messages/", query_string=q, headers=member.auth), 404, "not_found")


def test_only_owners_and_admins_grant_and_a_grant_manages_nothing(client, world, team):
    owner, granted, _, member = team
    assert_error(grant(client, member, granted.inbox_id, [member.user_id]), 403, "forbidden")
    assert_error(client.put(f"/v1/inboxes/{granted.inbox_id}/members/", json={"user_ids": []},
                            headers=granted.agent.auth), 403, "session_required")
    admin = world.member(owner, "admin")
    assert grant(client, admin, granted.inbox_id, [member.user_id, member.user_id]).json["user_ids"] == [
        member.user_id]
    # A grant lets the member use the inbox, not manage it, its tokens or its held actions.
    assert_error(client.patch(f"/v1/inboxes/{granted.inbox_id}/", json={"status": "paused"}, headers=member.auth),
                 403, "forbidden")
    assert_error(client.post("/v1/tokens/", json={"inbox_id": granted.inbox_id, "label": "x",
                                                  "scopes": ["email:read"]}, headers=member.auth), 403, "forbidden")
    assert_error(client.get("/v1/approvals/", headers=member.auth), 403, "forbidden")
    assert_error(grant(client, owner, granted.inbox_id, ["usr_unknown"]), 400, "validation_error",
                 field="user_ids[0]")
    types = [e["type"] for e in client.get("/v1/events/", query_string={"inbox_id": granted.inbox_id},
                                           headers=owner.auth).json["results"]]
    assert "inbox.members_changed" in types


def test_a_system_principal_acts_in_its_tenant_only_and_never_as_a_person(store, settings, world, team):
    owner, granted, _, member = team
    stranger = world.owner()
    their_inbox = world.inbox(stranger)
    with store.session() as db:
        system = Principal.system(owner.tenant_id, "worker")
        assert (system.kind, system.id, system.actor) == ("system", "system:worker",
                                                           {"kind": "system", "id": "system:worker"})
        assert system.is_manager and system.has_scope("email:send") and not system.is_agent
        assert system.requires_approval == () and system.user is None
        require_manager(system)  # manages its tenant's rows...
        assert inbox_for(db, system, granted.inbox_id).id == granted.inbox_id
        with pytest.raises(NotFoundError):  # ...and sees no other tenant's
            inbox_for(db, system, their_inbox)
        with pytest.raises(NotFoundError):
            inboxes.get_inbox(db, system, their_inbox)
        assert [d.name for d in domains.list_domains(db, system)] == ["alpha.test"]
        with pytest.raises(ForbiddenError):  # people's roles are decided by people
            members.set_role(db, system, member.user_id, "admin")
    with pytest.raises(ValueError):
        Principal.system("", "worker")


def test_a_workflow_principal_is_bound_to_its_inbox_and_scopes(store, team):
    owner, granted, other, _ = team
    with store.session() as db:
        flow = Principal.workflow(owner.tenant_id, "wfl_1", granted.inbox_id, ["email:read", "email:send"],
                                  requires_approval=["email:send"])
        assert (flow.kind, flow.id, flow.own_inbox_id) == ("workflow", "wfl_1", granted.inbox_id)
        assert flow.has_scope("email:read") and not flow.has_scope("approvals:write")
        assert approvals.required(flow, "email:send") and not approvals.required(flow, "email:read")
        assert inbox_for(db, flow, None).id == granted.inbox_id
        with pytest.raises(ForbiddenError) as refused:
            inbox_for(db, flow, other.inbox_id)
        assert refused.value.code == "inbox_mismatch"
        with pytest.raises(ForbiddenError):
            require_manager(flow)
    with pytest.raises(ValueError):
        Principal.workflow(owner.tenant_id, "wfl_1", granted.inbox_id, ["no:such-scope"])


def test_the_command_line_acts_as_the_appliance_not_as_the_tenants_owner(store, settings, team):
    """`gentbox inbox create` without --as used to act as the tenant's owner, so the owner was
    recorded as the actor of something they never did."""
    from appliance.cli_mail import cmd_inbox
    owner = team[0]
    args = argparse.Namespace(action="create", address="new@alpha.test", display_name=None, timezone=None,
                              as_user=None)
    assert cmd_inbox(args, settings, store) == 0
    with store.session() as db:
        principal = operators.principal_for(db, None, domain="alpha.test")
        assert (principal.kind, principal.tenant_id) == ("system", owner.tenant_id)
        inbox = db.scalar(select(Inbox).where(Inbox.address == "new@alpha.test"))
        assert inbox.tenant_id == owner.tenant_id
        actors = list(db.execute(select(Event.actor_kind, Event.actor_id).where(Event.type == "inbox.created",
                                                                                Event.resource_id == inbox.id)))
        assert [tuple(a) for a in actors] == [("system", "system:cli")]
        # --as still acts as that person.
        assert operators.principal_for(db, owner.email).user.id == owner.user_id


def test_an_expired_approval_names_the_appliance_as_its_actor(client, store, world, team):
    import datetime as dt

    from appliance.clock import utcnow
    owner, granted, _, _ = team
    held = world.agent(owner, granted.inbox_id, ["email:send"], requires_approval=["email:send"])
    approval_id = client.post("/v1/messages/", json=HELLO, headers=held.auth).json["approval_id"]
    with store.session() as db:
        assert approvals.expire_approvals(db, utcnow() + dt.timedelta(days=2)) == 1
    with store.session() as db:
        actor = db.execute(select(Event.actor_kind, Event.actor_id).where(Event.type == "approval.expired",
                                                                          Event.resource_id == approval_id)).one()
    assert tuple(actor) == ("system", "system:worker")
    with store.session() as db:  # and a system principal cannot decide held actions
        principal = authenticate(db, owner.access_token)
        assert principal.kind == "user"
        with pytest.raises(ForbiddenError):
            approvals.approve(db, store.settings, Principal.system(owner.tenant_id, "worker"), approval_id)
