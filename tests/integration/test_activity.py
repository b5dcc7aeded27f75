"""Issue 21 point 1: the activity timeline, fed from the event table by one projector.

Real components: the agent sends with the API, the real Worker delivers to an aiosmtpd "remote
MX" found through dnsmasq (first accepted: delivered; then refused: bounced), Bob writes in with
smtplib to our listener, a calendar event invites him, and a held send asks for approval. The
worker's projector then shows all of it for Bob, in order; reading the events again (the cursor
moved back) adds nothing, pages are stable under new activity, and `since` and `contact_id` work.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from appliance import clock
from appliance.models import ActivityItem, AlertCursor, RelationshipNode, SystemMail
from appliance.services.intelligence import activity
from appliance.worker import Worker
from tests.helpers import assert_error
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings

AGENT = "desk@activity.example"
BOB = "bob@partner.example"
SCOPES = ("email:send", "email:read", "context:read", "calendar:write")


def _send(client, agent, subject: str) -> str:
    resp = client.post("/v1/messages/", headers=agent.auth,
                       json={"to": [{"email": BOB, "name": "Bob Partner"}], "subject": subject, "text_body": "Hi."})
    assert resp.status_code in (201, 202), resp.json  # 202: held for approval
    return resp.json.get("message_id") or resp.json["approval_id"]


def _timeline(client, agent, **query) -> list[dict]:
    resp = client.get("/v1/activity/", headers=agent.auth, query_string={"address": BOB, **query})
    assert resp.status_code == 200, resp.json
    return resp.json["events"]


def _story(world, store, settings, client, make_settings, remote_world, smtp_listener):
    """Sent + delivered, received, sent + bounced, a calendar invitation, a held send."""
    owner = world.owner()
    agent = world.sender(owner, AGENT, scopes=SCOPES)
    with store.session() as db:  # the owner's sign-up mail is not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    mx = remote_world.receivers[0]
    remote_world.domain("partner.example", mx=[(10, mx)])
    worker = Worker(store, delivery_settings(make_settings, remote_world, secret_key=settings.secret_key))
    listener = smtp_listener()
    try:
        _send(client, agent, "Proposal")
        worker.run_once()
        mx.wait_for(1)
        with smtp_client(listener) as smtp:
            smtp.sendmail(BOB, [AGENT], message_bytes("Re: Proposal", AGENT, sender=BOB, body="Looks good."))
        mx.set_behaviour("permfail_rcpt", recipient=BOB, times=1)
        _send(client, agent, "Second try")
        worker.run_once()
        resp = client.post("/v1/calendar/events/", headers=agent.auth, json={
            "title": "Kick-off", "start": "2030-01-07T10:00:00Z", "participants": [{"email": BOB}]})
        assert resp.status_code == 201, resp.json
        held = world.agent(owner, agent.inbox_id, ["email:send"], requires_approval=["email:send"])
        _send(client, held, "Needs a yes")
        assert worker.project_activity() > 0
    finally:
        worker.close()
    return owner, agent, worker


EXPECTED = ["message.sent", "message.delivered", "message.received", "message.sent", "message.bounced",
            "calendar_event.created", "message.sent", "approval.requested"]


def test_a_contacts_activity_shows_mail_calendar_and_approvals_in_order_once(
        world, store, settings, client, make_settings, remote_world, smtp_listener) -> None:
    owner, agent, worker = _story(world, store, settings, client, make_settings, remote_world, smtp_listener)
    items = _timeline(client, agent)
    assert [i["type"] for i in items] == EXPECTED
    summaries = [i["summary"] for i in items]
    assert summaries[:5] == ["Proposal", "Proposal", "Re: Proposal", "Second try", "Second try"]
    assert summaries[5] == "Kick-off" and summaries[-1] == "Needs a yes"
    assert all(i["contact_address"] == BOB and i["inbox_id"] == agent.inbox_id for i in items)
    assert items[4]["metadata"]["smtp_reply"].startswith("550")
    assert items[2]["participants"] == [BOB] and items[2]["metadata"]["thread_id"].startswith("thr_")
    times = [i["occurred_at"] for i in items]
    assert times == sorted(times)
    # Bob became an auto-contact when mailed: the same history by contact_id, which each item names.
    contact_id = items[0]["contact_id"]
    assert contact_id and contact_id.startswith("ctc_")
    by_contact = client.get("/v1/activity/", headers=agent.auth, query_string={"contact_id": contact_id}).json
    assert [i["id"] for i in by_contact["events"]] == [i["id"] for i in items]

    with store.session() as db:  # the bounce is in the inbox, but robots are not relationships
        senders = set(db.scalars(select(ActivityItem.address).where(ActivityItem.type == "message.received")))
        assert any(a.startswith("mailer-daemon@") for a in senders)
        assert set(db.scalars(select(RelationshipNode.address))) == {BOB}
    # Replayed: the cursor moved back to the start; nothing is added and nothing counted twice.
    with store.session() as db:
        nodes_before = db.execute(select(RelationshipNode.inbound_count, RelationshipNode.outbound_count)
                                  .where(RelationshipNode.address == BOB)).one()
        db.execute(update(AlertCursor).where(AlertCursor.name == activity.TAILER).values(last_seq=0))
    assert worker.project_activity() > 0
    assert [i["id"] for i in _timeline(client, agent)] == [i["id"] for i in items]
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(ActivityItem).where(ActivityItem.address == BOB)) == 8
        assert db.execute(select(RelationshipNode.inbound_count, RelationshipNode.outbound_count)
                          .where(RelationshipNode.address == BOB)).one() == nodes_before == (1, 3)


def test_pages_are_stable_under_new_activity_and_since_filters(
        world, store, settings, client, make_settings, remote_world, smtp_listener) -> None:
    owner, agent, worker = _story(world, store, settings, client, make_settings, remote_world, smtp_listener)
    first = client.get("/v1/activity/", headers=agent.auth, query_string={"address": BOB, "limit": 3}).json
    assert [i["type"] for i in first["events"]] == EXPECTED[:3] and first["cursor"]
    _send(client, agent, "Late news")  # new activity between two page reads
    worker.project_activity()
    pages, cursor = [first["events"]], first["cursor"]
    while cursor:
        page = client.get("/v1/activity/", headers=agent.auth,
                          query_string={"address": BOB, "limit": 3, "cursor": cursor}).json
        pages.append(page["events"])
        cursor = page["cursor"]
    seen = [i["type"] for page in pages for i in page]
    assert seen == [*EXPECTED, "message.sent"]  # nothing skipped or repeated; the new one last
    later = (clock.utcnow() + dt.timedelta(minutes=5)).isoformat()
    assert _timeline(client, agent, since=later) == []
    assert len(_timeline(client, agent, since="2000-01-01T00:00:00Z")) == 9
    assert_error(client.get("/v1/activity/", headers=agent.auth), 400, "validation_error", "contact_id")
    assert_error(client.get("/v1/activity/", headers=agent.auth, query_string={"address": BOB, "cursor": "1.x"}),
                 400, "validation_error", "cursor")
    # Another tenant's agent sees nothing of it, and cannot name this inbox's contact.
    stranger = world.owner()
    other = world.sender(stranger, "desk@elsewhere.example", scopes=SCOPES)
    assert _timeline(client, other) == []
    contact_id = first["events"][0]["contact_id"]
    resp = client.get("/v1/activity/", headers=other.auth, query_string={"contact_id": contact_id})
    assert resp.status_code == 404


def test_activity_older_than_two_years_is_purged(world, store, settings, client, make_settings, remote_world,
                                                  smtp_listener) -> None:
    owner, agent, worker = _story(world, store, settings, client, make_settings, remote_world, smtp_listener)
    with store.session() as db:
        first = db.scalar(select(ActivityItem).order_by(ActivityItem.seq).limit(1))
        first.occurred_at = clock.utcnow() - dt.timedelta(days=activity.RETENTION_DAYS + 1)
    with store.session() as db:
        assert activity.purge_activity(db) == 1
    assert [i["type"] for i in _timeline(client, agent)] == EXPECTED[1:]
