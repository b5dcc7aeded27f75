"""Tasks and the agenda per inbox (issue 18): list, create, complete, edit and delete tasks, and
the agenda (open tasks, missed replies and what other areas register). The same service
functions as /v1/tasks/ and /v1/agenda/; due times are typed as the API takes them (ISO 8601 in
the inbox's zone, 'tomorrow 10am', 'in 2 hours')."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity import inboxes
from appliance.services.workspace import agenda, tasks
from appliance.timeinput import zone_info
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading

nav_item("Tasks", "webui.tasks_home", order=41)
PAGE = 200


@bp.route("/admin/tasks/")
@login_required_page
def tasks_home():  # noqa: ANN201
    """The inboxes, each with its tasks and agenda (the only one's shown straight away)."""
    return inbox_home("webui.tasks_page", "tasks/home.html")


@bp.route("/admin/inboxes/<inbox_id>/tasks/")
@login_required_page
def tasks_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    show = request.args.get("status") or None
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        rows = tasks.list_tasks(db, principal, inbox.id, status=show if show in tasks.STATUSES else None, limit=PAGE)
    shown = [tasks.task_to_dict(t, inbox.default_timezone) for t in rows]
    if show is None:  # open ones first, then the rest, each oldest first
        shown.sort(key=lambda t: t["status"] not in tasks.OPEN_STATUSES)
    return render_template("tasks/index.html", inbox=inbox, rows=shown, show=show, statuses=tasks.STATUSES,
                           zone=inbox.default_timezone or "UTC")


def _whole(value: str) -> int | str | None:
    if not value:
        return None
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else value


def _form_fields(*, editing: bool) -> dict:
    form = request.form
    data = {"summary": form.get("summary", ""), "description": form.get("description", ""),
            "due": form.get("due", "").strip() or None,
            # A form sends text: a whole number goes to the service as one, anything else as it came
            # (so the service answers with the API's message instead of the field being dropped).
            "priority": _whole(form.get("priority", "").strip())}
    if editing:
        data["status"] = form.get("status", "needs_action")
    return data


@bp.route("/admin/inboxes/<inbox_id>/tasks/", methods=["POST"])
@login_required_page
def task_create(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox is a 404 page, before anything else
        inboxes.get_inbox(db, current_principal(), inbox_id)
    with attempt() as work:
        task = tasks.create_task(work.db, current_principal(), inbox_id, _form_fields(editing=False))
        summary = task.summary
    if work.ok:
        flash(f"Created the task “{summary}”.", "success")
    return redirect(url_for("webui.tasks_page", inbox_id=inbox_id), code=303)


def _own(task_id: str):  # noqa: ANN202
    """The caller's task and its inbox; another tenant's task is a 404 page."""
    with reading() as db:
        task = tasks.get_task(db, current_principal(), task_id)
        return task, inboxes.get_inbox(db, current_principal(), task.inbox_id)


@bp.route("/admin/tasks/<task_id>/")
@login_required_page
def task_page(task_id: str):  # noqa: ANN201
    task, inbox = _own(task_id)
    shown = tasks.task_to_dict(task, inbox.default_timezone)
    local_due = task.due.astimezone(zone_info(inbox.default_timezone)).strftime("%Y-%m-%dT%H:%M") if task.due else ""
    return render_template("tasks/edit.html", task=shown, inbox=inbox, local_due=local_due,
                           statuses=tasks.STATUSES, zone=inbox.default_timezone or "UTC")


@bp.route("/admin/tasks/<task_id>/", methods=["POST"])
@login_required_page
def task_update(task_id: str):  # noqa: ANN201
    _, inbox = _own(task_id)
    with attempt() as work:
        tasks.update_task(work.db, current_principal(), task_id, None, _form_fields(editing=True))
    if work.failed:
        return redirect(url_for("webui.task_page", task_id=task_id), code=303)
    flash("Saved the task.", "success")
    return redirect(url_for("webui.tasks_page", inbox_id=inbox.id), code=303)


@bp.route("/admin/tasks/<task_id>/complete/", methods=["POST"])
@login_required_page
def task_complete(task_id: str):  # noqa: ANN201
    _, inbox = _own(task_id)
    with attempt() as work:
        tasks.update_task(work.db, current_principal(), task_id, None, {"status": "completed"})
    if work.ok:
        flash("Marked the task completed.", "success")
    return redirect(url_for("webui.tasks_page", inbox_id=inbox.id), code=303)


@bp.route("/admin/tasks/<task_id>/delete/", methods=["POST"])
@login_required_page
def task_delete(task_id: str):  # noqa: ANN201
    task, inbox = _own(task_id)
    asked = confirmation(f"Delete the task “{task.summary}”? This cannot be undone.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        tasks.delete_task(work.db, current_principal(), task_id)
    if work.ok:
        flash("Deleted the task.", "success")
    return redirect(url_for("webui.tasks_page", inbox_id=inbox.id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/agenda/")
@login_required_page
def agenda_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        page = agenda.agenda(db, principal, inbox.id, limit=PAGE)
    return render_template("tasks/agenda.html", inbox=inbox, items=page["items"], more=page["cursor"] is not None,
                           zone=inbox.default_timezone or "UTC")
