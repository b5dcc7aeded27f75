"""Issue 21 leftover: the activity projector shows `task.deleted` for the people of the deleted
task's related message, even when it reads the events after the row is gone."""
from __future__ import annotations

from appliance.services.intelligence import activity
from tests.api.test_digests import FIRST, _receive

ALICE = "alice@partner.example"


def _timeline(client, agent) -> list[tuple[str, str]]:
    resp = client.get("/v1/activity/", headers=agent.auth, query_string={"address": ALICE})
    assert resp.status_code == 200, resp.json
    return [(item["type"], item["resource_id"]) for item in resp.json["events"]]


def _project(store) -> None:
    with store.session() as db:
        while activity.project(db):
            pass


def _task(client, agent, message_id: str) -> str:
    resp = client.post("/v1/tasks/", headers=agent.auth,
                       json={"summary": "Confirm the catering", "related": {"type": "message", "id": message_id}})
    assert resp.status_code == 201, resp.json
    return resp.json["task_id"]


def test_a_deleted_task_shows_in_the_related_persons_activity(client, world, store) -> None:
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), ["email:read", "task:write", "context:read"])
    message_id = _receive(store, agent.inbox_id, FIRST.format(due="December 18, 2030"))
    kept = _task(client, agent, message_id)
    _project(store)  # the projector saw task.created while the row existed
    assert client.delete(f"/v1/tasks/{kept}/", headers=agent.auth).status_code == 204
    gone = _task(client, agent, message_id)
    assert client.delete(f"/v1/tasks/{gone}/", headers=agent.auth).status_code == 204
    _project(store)  # created and deleted before the projector read either event
    timeline = _timeline(client, agent)
    assert ("task.created", kept) in timeline and ("task.deleted", kept) in timeline
    assert ("task.deleted", gone) in timeline
    assert timeline.index(("task.created", kept)) < timeline.index(("task.deleted", kept))
    deleted = next(i for i in client.get("/v1/activity/", headers=agent.auth, query_string={"address": ALICE})
                   .json["events"] if i["type"] == "task.deleted")
    assert deleted["summary"] == "Confirm the catering"
    assert deleted["metadata"]["related"] == {"type": "message", "id": message_id}
