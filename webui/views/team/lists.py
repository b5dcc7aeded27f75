"""Distribution lists for a tenant's owners and admins (issue 16.5): create a list on a verified
domain, delete it, add and remove member inboxes. The same service functions as
/v1/distribution-lists/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.models import MANAGER_ROLES
from appliance.services.domains import domains
from appliance.services.identity import inboxes
from appliance.services.team import lists
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import confirmation
from webui.store import attempt, reading

nav_item("Lists", "webui.lists_page", order=36, audience="tenant", roles=MANAGER_ROLES)


@bp.route("/admin/lists/")
@manager_required
def lists_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        items = [lists.list_to_dict(db, row) for row in lists.list_lists(db, principal)]
        verified = [d.name for d in domains.list_domains(db, principal) if d.status == "verified"]
        boxes = [(i.id, i.address) for i in inboxes.list_inboxes(db, principal, after=None, limit=500)]
    return render_template("lists/index.html", items=items, verified=verified, inboxes=boxes)


def _back():  # noqa: ANN202
    return redirect(url_for("webui.lists_page"), code=303)


@bp.route("/admin/lists/", methods=["POST"])
@manager_required
def list_create():  # noqa: ANN201
    form = request.form
    address = f"{form.get('local_part', '').strip()}@{form.get('domain', '').strip()}"
    with attempt() as work:
        address = lists.create_list(work.db, current_principal(), address, form.get("name", "")).address
    if work.ok:
        flash(f"Created the list {address}. Add its member inboxes below.", "success")
    return _back()


@bp.route("/admin/lists/<list_id>/delete/", methods=["POST"])
@manager_required
def list_delete(list_id: str):  # noqa: ANN201
    with reading() as db:
        address = lists.get_list(db, current_principal(), list_id).address  # another tenant's: 404 first
    asked = confirmation(f"Delete the list {address}? Mail to it is refused from now on; the copies already "
                         "in its members' inboxes stay.", button="Delete list")
    if asked is not None:
        return asked
    with attempt() as work:
        lists.delete_list(work.db, current_principal(), list_id)
    if work.ok:
        flash(f"Deleted the list {address}.", "success")
    return _back()


@bp.route("/admin/lists/<list_id>/members/", methods=["POST"])
@manager_required
def list_member_add(list_id: str):  # noqa: ANN201
    with attempt() as work:
        row = lists.add_member(work.db, current_principal(), list_id, request.form.get("inbox_id", ""))
        address = row.address
    if work.ok:
        flash(f"Added the inbox to {address}.", "success")
    return _back()


@bp.route("/admin/lists/<list_id>/members/<inbox_id>/remove/", methods=["POST"])
@manager_required
def list_member_remove(list_id: str, inbox_id: str):  # noqa: ANN201
    with attempt() as work:
        lists.remove_member(work.db, current_principal(), list_id, inbox_id)
    if work.ok:
        flash("Removed the inbox from the list.", "success")
    return _back()
