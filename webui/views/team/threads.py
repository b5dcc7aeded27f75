"""Notes and assignment of a thread in the web UI (issue 16), shown on a message's page: the
thread's notes (delete on one's own), a note form with mentions, and assigning the thread to
another inbox of the team or revoking that. The same service functions as the thread routes of
/v1/messages/threads/{id}/."""
from __future__ import annotations

from flask import flash, redirect, request, url_for

from appliance.services.identity import inboxes
from appliance.services.identity.auth import inbox_for
from appliance.services.mail import messages
from appliance.services.team import assignment, notes
from webui import bp, current_principal, manager_required
from webui.store import attempt, reading


def thread_panel(db, inbox, thread_id: str) -> dict:  # noqa: ANN001
    """What the message page shows of its thread: notes, the standing assignment, the choices."""
    principal = current_principal()
    standing = assignment.current(db, thread_id)
    team = [i for i in inboxes.list_inboxes(db, principal, after=None, limit=1000) if i.id != inbox.id]
    return {"thread_id": thread_id, "me": principal.id,
            "notes": [{**notes.note_to_dict(n), "mine": n.author_id == principal.id}
                      for n in notes.list_notes(db, inbox, thread_id)],
            "assignee": next((i.address for i in team if standing and i.id == standing.assignee_inbox_id), None),
            "assigned_at": assignment.assignment_to_dict(standing)["assigned_at"] if standing else None,
            "inboxes": [(i.id, i.address) for i in team]}


def _back(inbox_id: str) -> object:
    message_id = request.form.get("message_id", "")
    if message_id:
        return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)
    return redirect(url_for("webui.mail_inbox", inbox_id=inbox_id), code=303)


def _thread_of_inbox(inbox_id: str, thread_id: str) -> None:
    """Another tenant's (or inbox's) thread is a 404 page, before any form work."""
    with reading() as db:
        messages.get_thread(db, inbox_for(db, current_principal(), inbox_id), thread_id)


@bp.route("/admin/mail/<inbox_id>/threads/<thread_id>/notes/", methods=["POST"])
@manager_required
def note_create(inbox_id: str, thread_id: str):  # noqa: ANN201
    _thread_of_inbox(inbox_id, thread_id)
    principal = current_principal()
    mentions = [m.strip() for m in request.form.get("mentions", "").split(",") if m.strip()]
    with attempt() as work:
        notes.create_note(work.db, principal, inbox_for(work.db, principal, inbox_id), thread_id,
                          request.form.get("body", "").replace("\r\n", "\n"), mentions)
    if work.ok:
        flash("Added the note (your team sees it; it is never sent).", "success")
    return _back(inbox_id)


@bp.route("/admin/mail/<inbox_id>/threads/<thread_id>/notes/<note_id>/delete/", methods=["POST"])
@manager_required
def note_delete(inbox_id: str, thread_id: str, note_id: str):  # noqa: ANN201
    _thread_of_inbox(inbox_id, thread_id)
    principal = current_principal()
    with attempt() as work:
        notes.delete_note(work.db, principal, inbox_for(work.db, principal, inbox_id), thread_id, note_id)
    if work.ok:
        flash("Deleted the note.", "success")
    return _back(inbox_id)


@bp.route("/admin/mail/<inbox_id>/threads/<thread_id>/assign/", methods=["POST"])
@manager_required
def thread_assign(inbox_id: str, thread_id: str):  # noqa: ANN201
    _thread_of_inbox(inbox_id, thread_id)
    principal = current_principal()
    with attempt() as work:
        inbox = inbox_for(work.db, principal, inbox_id)
        if request.form.get("assignee_inbox_id"):
            assignment.assign(work.db, inbox, thread_id, request.form["assignee_inbox_id"], actor=principal.id)
        else:
            assignment.unassign(work.db, inbox, thread_id, actor=principal.id)
    if work.ok:
        flash("Assigned the thread." if request.form.get("assignee_inbox_id") else "Revoked the assignment.",
              "success")
    return _back(inbox_id)
