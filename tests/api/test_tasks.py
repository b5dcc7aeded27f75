"""Issue 18 point 6, tasks (contract section 12): CRUD through /v1/tasks/ with due times read by
appliance/timeinput.py and answered in the inbox's zone, priority and status rules
(completed_at set and cleared), related links checked in the inbox, events, the planned
`task.due`, scopes, and tenancy (another tenant's task is 404). SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from appliance import clock
from appliance.models import Event, Schedule
from appliance.services.automation import schedule
from tests.helpers import assert_error


@pytest.fixture
def box(world, client):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    resp = client.patch(f"/v1/inboxes/{inbox_id}/", json={"default_timezone": "Europe/Berlin"}, headers=owner.auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    agent = world.agent(owner, inbox_id, ["task:read", "task:write"])
    return owner, inbox_id, agent


def _events(store, task_id: str) -> list[str]:
    with store.session() as db:
        return list(db.scalars(select(Event.type).where(Event.resource_id == task_id).order_by(Event.seq)))


def test_create_read_update_complete_delete(client, store, box):
    owner, inbox_id, agent = box
    made = client.post("/v1/tasks/", json={"summary": "Send the offer", "description": "v2, with prices",
                                           "due": "2031-03-30T09:00", "priority": 2}, headers=agent.auth)
    assert made.status_code == 201, made.json
    task = made.json
    assert task["task_id"].startswith("tsk_") and task["inbox_id"] == inbox_id
    # A naive due is the inbox's wall clock, answered in its zone with the zone named (CEST).
    assert (task["due"], task["time_zone"]) == ("2031-03-30T09:00:00+02:00", "Europe/Berlin")
    assert (task["status"], task["priority"], task["completed_at"], task["related"]) == ("needs_action", 2, None, None)

    assert client.get(f"/v1/tasks/{task['task_id']}/", headers=agent.auth).json == task
    listed = client.get("/v1/tasks/", headers=agent.auth).json
    assert [t["task_id"] for t in listed["results"]] == [task["task_id"]] and listed["cursor"] is None
    by_session = client.get("/v1/tasks/", query_string={"inbox_id": inbox_id}, headers=owner.auth).json
    assert [t["task_id"] for t in by_session["results"]] == [task["task_id"]]

    done = client.patch(f"/v1/tasks/{task['task_id']}/", json={"status": "completed"}, headers=agent.auth)
    assert done.status_code == 200, done.json
    assert done.json["status"] == "completed" and done.json["completed_at"] is not None
    reopened = client.patch(f"/v1/tasks/{task['task_id']}/", json={"status": "in_progress", "due": None,
                                                                   "priority": None}, headers=agent.auth).json
    assert (reopened["status"], reopened["completed_at"], reopened["due"], reopened["priority"]) == \
        ("in_progress", None, None, None)
    assert reopened["summary"] == "Send the offer"  # fields left out stay

    gone = client.delete(f"/v1/tasks/{task['task_id']}/", headers=agent.auth)
    assert gone.status_code == 204
    assert_error(client.get(f"/v1/tasks/{task['task_id']}/", headers=agent.auth), 404, "not_found")
    assert _events(store, task["task_id"]) == ["task.created", "task.completed", "task.updated", "task.deleted"]


def test_natural_language_due_is_read_in_the_inbox_zone(client, box):
    _, _, agent = box
    made = client.post("/v1/tasks/", json={"summary": "Call back", "due": "tomorrow 10am"}, headers=agent.auth)
    assert made.status_code == 201, made.json
    tomorrow = (clock.utcnow().astimezone(ZoneInfo("Europe/Berlin")) + dt.timedelta(days=1)).date()
    due = dt.datetime.fromisoformat(made.json["due"])
    assert (due.date(), due.hour, due.minute) == (tomorrow, 10, 0)
    assert due.utcoffset() == ZoneInfo("Europe/Berlin").utcoffset(due.replace(tzinfo=None))


@pytest.mark.parametrize("body, field, code", [
    ({"summary": "x", "due": "banana"}, "due", "invalid_time"),
    ({"summary": "x", "due": "tomorrow at 25:00"}, "due", "invalid_time"),
    ({"summary": "x", "due": "2031-02-30T10:00"}, "due", "invalid_time"),
    ({"summary": "x", "priority": 0}, "priority", "validation_error"),
    ({"summary": "x", "priority": 10}, "priority", "validation_error"),
    ({"summary": "x", "status": "done"}, "status", "validation_error"),
    ({"summary": ""}, "summary", "validation_error"),
    ({"summary": "x", "related": {"type": "message", "id": "msg_01J00000000000000000000000"}}, "related.id",
     "validation_error"),
    ({"summary": "x", "related": {"type": "thread", "id": "nope"}}, "related.id", "validation_error"),
    ({"summary": "x", "related": {"type": "invoice", "id": "x"}}, "related.type", "validation_error"),
    ({"summary": "x", "colour": "red"}, "colour", "validation_error"),
])
def test_bad_input_is_400_naming_the_field(client, box, body, field, code):
    _, _, agent = box
    resp = client.post("/v1/tasks/", json=body, headers=agent.auth)
    err = assert_error(resp, 400, code)
    assert err.get("field", "").startswith(field), err
    if code == "invalid_time":
        assert "tomorrow 10am" in err["fix"]


def test_related_links_a_message_of_the_same_inbox_only(client, world, box):
    owner, inbox_id, agent = box
    sender = world.sender(owner, "desk@linked.example")
    sent = client.post("/v1/messages/", json={"to": [{"email": "x@remote.example"}], "subject": "Quote",
                                              "text_body": "Attached."}, headers=sender.auth)
    assert sent.status_code == 201, sent.json
    elsewhere = {"summary": "Chase", "related": {"type": "message", "id": sent.json["message_id"]}}
    assert_error(client.post("/v1/tasks/", json=elsewhere, headers=agent.auth), 400, "validation_error")
    own = world.agent(owner, sender.inbox_id, ["task:write"])
    linked = client.post("/v1/tasks/", json=elsewhere, headers=own.auth)
    assert linked.status_code == 201, linked.json
    assert linked.json["related"] == {"type": "message", "id": sent.json["message_id"]}
    thread = {"summary": "Thread", "related": {"type": "thread", "id": sent.json["thread_id"]}}
    assert client.post("/v1/tasks/", json=thread, headers=own.auth).status_code == 201


def test_an_open_task_plans_task_due_and_completing_cancels_it(client, store, box):
    _, _, agent = box
    due = (clock.utcnow() + dt.timedelta(hours=2)).replace(microsecond=0)
    made = client.post("/v1/tasks/", json={"summary": "Renew", "due": due.isoformat()}, headers=agent.auth).json
    key = f"task:{made['task_id']}:due"
    with store.session() as db:
        row = db.scalar(select(Schedule).where(Schedule.key == key))
        assert (row.event_type, row.resource_id, row.due_at) == ("task.due", made["task_id"], due)
    clock.advance(dt.timedelta(hours=3))
    assert schedule.fire_due(store.session) == 1
    assert _events(store, made["task_id"])[-1] == "task.due"

    later = client.post("/v1/tasks/", json={"summary": "Later", "due": "in 3 days"}, headers=agent.auth).json
    client.patch(f"/v1/tasks/{later['task_id']}/", json={"status": "cancelled"}, headers=agent.auth)
    with store.session() as db:
        assert db.scalar(select(Schedule).where(Schedule.key == f"task:{later['task_id']}:due")) is None


def test_paging_and_status_filter(client, box):
    _, _, agent = box
    ids = [client.post("/v1/tasks/", json={"summary": f"t{i}", "status": "completed" if i % 2 else "needs_action"},
                       headers=agent.auth).json["task_id"] for i in range(5)]
    first = client.get("/v1/tasks/", query_string={"limit": 2}, headers=agent.auth).json
    second = client.get("/v1/tasks/", query_string={"limit": 2, "cursor": first["cursor"]}, headers=agent.auth).json
    third = client.get("/v1/tasks/", query_string={"limit": 2, "cursor": second["cursor"]}, headers=agent.auth).json
    assert [t["task_id"] for t in first["results"] + second["results"] + third["results"]] == ids
    assert third["cursor"] is None
    done = client.get("/v1/tasks/", query_string={"status": "completed"}, headers=agent.auth).json
    assert [t["task_id"] for t in done["results"]] == ids[1::2]


def test_scopes(client, world, box):
    owner, inbox_id, agent = box
    task_id = client.post("/v1/tasks/", json={"summary": "Scoped"}, headers=agent.auth).json["task_id"]
    reader = world.agent(owner, inbox_id, ["task:read"])
    mailer = world.agent(owner, inbox_id, ["email:read", "email:send"])
    assert client.get(f"/v1/tasks/{task_id}/", headers=reader.auth).status_code == 200
    for resp in (client.post("/v1/tasks/", json={"summary": "no"}, headers=reader.auth),
                 client.patch(f"/v1/tasks/{task_id}/", json={"summary": "no"}, headers=reader.auth),
                 client.delete(f"/v1/tasks/{task_id}/", headers=reader.auth)):
        assert "task:write" in assert_error(resp, 403, "insufficient_scope")["fix"]
    assert "task:read" in assert_error(client.get("/v1/tasks/", headers=mailer.auth), 403,
                                       "insufficient_scope")["fix"]
    # The agenda takes task:read or calendar:read.
    calendar = world.agent(owner, inbox_id, ["calendar:read"])
    assert client.get("/v1/agenda/", headers=calendar.auth).status_code == 200
    assert client.get("/v1/agenda/", headers=reader.auth).status_code == 200
    assert_error(client.get("/v1/agenda/", headers=mailer.auth), 403, "insufficient_scope")


def test_another_tenant_gets_404(client, world, box):
    owner, inbox_id, agent = box
    task_id = client.post("/v1/tasks/", json={"summary": "Mine"}, headers=agent.auth).json["task_id"]
    stranger = world.owner()
    their_inbox = world.inbox(stranger)
    their_agent = world.agent(stranger, their_inbox, ["task:read", "task:write"])
    for auth, query in ((stranger.auth, {"inbox_id": their_inbox}), (stranger.auth, {"inbox_id": inbox_id}),
                        (stranger.auth, {}), (their_agent.auth, {})):
        for method in ("GET", "PATCH", "DELETE"):
            resp = client.open(f"/v1/tasks/{task_id}/", method=method, query_string=query, headers=auth,
                               json={"summary": "theirs"} if method == "PATCH" else None)
            assert_error(resp, 404, "not_found")
    assert_error(client.get("/v1/tasks/", query_string={"inbox_id": inbox_id}, headers=stranger.auth), 404,
                 "not_found")
    assert client.get("/v1/tasks/", headers=their_agent.auth).json["results"] == []
    assert_error(client.post("/v1/tasks/", json={"summary": "x", "inbox_id": inbox_id}, headers=stranger.auth),
                 404, "not_found")
    assert client.get(f"/v1/tasks/{task_id}/", headers=agent.auth).json["summary"] == "Mine"
