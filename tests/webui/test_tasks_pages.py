"""Issue 18 point 9 (tasks part): the Tasks page of an inbox creates, completes, edits and deletes
tasks (CSRF on every form, errors as flash messages), due times typed in words are read in the
inbox's zone, and the agenda page lists open tasks; another tenant's tasks are 404 pages."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import Task
from tests.webui.conftest import text_of


def _task(store) -> Task:
    with store.session() as db:
        return db.scalar(select(Task))


def test_create_complete_edit_delete(web, world, store, client):
    owner = world.owner()
    inbox = world.inbox(owner, "todo@mine.example.com")
    client.patch(f"/v1/inboxes/{inbox}/", json={"default_timezone": "America/New_York"}, headers=owner.auth)
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/inboxes/{inbox}/tasks/"))
    assert "No tasks here yet" in page and "America/New_York" in page
    made = web.post(f"/admin/inboxes/{inbox}/tasks/", {"summary": "Call the bank", "due": "2031-11-02T01:30",
                                                       "priority": "3", "description": "about the loan"})
    assert made.status_code == 303
    listing = text_of(web.get(made.headers["Location"]))
    assert "Created the task" in listing and "Call the bank" in listing
    assert "2031-11-02T01:30:00-04:00" in listing  # the first of the two 01:30s that night (EDT)
    task = _task(store)

    edit = text_of(web.get(f"/admin/tasks/{task.id}/"))
    assert 'value="2031-11-02T01:30"' in edit and "about the loan" in edit
    saved = web.post(f"/admin/tasks/{task.id}/", {"summary": "Call the bank back", "due": "", "priority": "",
                                                  "status": "in_progress", "description": ""})
    assert saved.status_code == 303
    task = _task(store)
    assert (task.summary, task.due, task.priority, task.status) == ("Call the bank back", None, None, "in_progress")

    bad = web.post(f"/admin/tasks/{task.id}/", {"summary": "x", "due": "banana", "status": "in_progress"})
    assert "is not a time" in text_of(web.get(bad.headers["Location"]))
    assert _task(store).summary == "Call the bank back"  # nothing changed

    agenda = text_of(web.get(f"/admin/inboxes/{inbox}/agenda/"))
    assert "Call the bank back" in agenda and "any time" in agenda

    assert web.post(f"/admin/tasks/{task.id}/complete/", {}).status_code == 303
    task = _task(store)
    assert task.status == "completed" and task.completed_at is not None
    assert "Nothing needs attention" in text_of(web.get(f"/admin/inboxes/{inbox}/agenda/"))

    asked = web.post(f"/admin/tasks/{task.id}/delete/", {})
    assert asked.status_code == 200 and "cannot be undone" in text_of(asked)
    assert web.post(f"/admin/tasks/{task.id}/delete/", {"confirm": "yes"}).status_code == 303
    assert _task(store) is None


def test_forms_need_csrf_and_other_tenants_get_404(web, web_for, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    assert web.post(f"/admin/inboxes/{inbox}/tasks/", {"summary": "No token"}, csrf=False).status_code == 400
    assert _task(store) is None
    web.post(f"/admin/inboxes/{inbox}/tasks/", {"summary": "Mine"})
    task = _task(store)
    stranger = world.owner()
    other = web_for()
    other.sign_in(stranger.email)
    assert other.get(f"/admin/inboxes/{inbox}/tasks/").status_code == 404
    assert other.get(f"/admin/inboxes/{inbox}/agenda/").status_code == 404
    assert other.get(f"/admin/tasks/{task.id}/").status_code == 404
    for path in (f"/admin/tasks/{task.id}/complete/", f"/admin/tasks/{task.id}/"):
        assert other.post(path, {"summary": "theirs", "status": "completed", "confirm": "yes"}).status_code == 404
    assert other.post(f"/admin/tasks/{task.id}/delete/", {"confirm": "yes"}).status_code == 404
    assert _task(store).status == "needs_action" and _task(store).summary == "Mine"
