"""Members' inboxes (issue 16.6): an owner or admin grants a `member` of the tenant specific
inboxes (the same service as PUT /v1/inboxes/{id}/members/); the member's session then sees
exactly those, on the Mail pages as in the API."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity import inboxes, members
from webui import bp, current_principal, manager_required
from webui.store import attempt, reading


@bp.route("/admin/inboxes/<inbox_id>/members/")
@manager_required
def inbox_members_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)  # another tenant's: 404 page
        granted = set(members.inbox_members(db, principal, inbox.id))
        people = [u for u in members.list_users(db, principal) if u.role == "member" and u.status == "active"]
    return render_template("inboxes/members.html", inbox=inbox, people=people, granted=granted)


@bp.route("/admin/inboxes/<inbox_id>/members/", methods=["POST"])
@manager_required
def inbox_members_set(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox: a 404 page before anything (no redirect naming it)
        inboxes.get_inbox(db, current_principal(), inbox_id)
    with attempt() as work:
        granted = members.set_inbox_members(work.db, current_principal(), inbox_id, request.form.getlist("user_id"))
    if work.ok:
        flash(f"{len(granted)} member(s) may use this inbox now.", "success")
    return redirect(url_for("webui.inbox_members_page", inbox_id=inbox_id), code=303)
