"""People: the tenant's users for its owners and admins (roles, disable), every user of the box
and the tenants list for operators."""
from __future__ import annotations

from flask import flash, render_template, request

from appliance.errors import GentError
from appliance.models import ROLES
from appliance.services.identity import members
from webui import bp, current_principal, flash_error, manager_required, nav_item, operator_required
from webui.pages import back, confirmation
from webui.store import reading, writing

nav_item("Users", "webui.users", order=60, audience="tenant", roles=("owner", "admin"))
nav_item("Tenants", "webui.tenants", order=25, audience="operator")


@bp.route("/admin/users/")
@manager_required
def users():  # noqa: ANN201
    principal = current_principal()
    everyone = request.args.get("scope") == "all" and principal.user.is_operator
    with reading() as db:
        people = members.list_users(db, principal, all_tenants=everyone)
    return render_template("users/index.html", people=people, roles=ROLES, everyone=everyone)


@bp.route("/admin/users/<user_id>/role/", methods=["POST"])
@manager_required
def user_role(user_id: str):  # noqa: ANN201
    role = request.form.get("role", "")
    try:
        with writing() as db:
            user = members.set_role(db, current_principal(), user_id, role)
        flash(f"{user.email} is now {role}.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.users")


@bp.route("/admin/users/<user_id>/disable/", methods=["POST"])
@manager_required
def user_disable(user_id: str):  # noqa: ANN201
    with reading() as db:  # the question names the user, found through the same access rule
        target = next((u for u in members.list_users(db, current_principal(),
                                                     all_tenants=current_principal().user.is_operator)
                       if u.id == user_id), None)
    asked = confirmation(f"Disable {target.email if target else 'this user'}? They are signed out everywhere "
                         "at once and cannot sign in until enabled again.", button="Disable")
    if asked is not None:
        return asked
    return _set_status(user_id, "disabled")


@bp.route("/admin/users/<user_id>/enable/", methods=["POST"])
@manager_required
def user_enable(user_id: str):  # noqa: ANN201
    return _set_status(user_id, "active")


def _set_status(user_id: str, status: str):  # noqa: ANN202
    try:
        with writing() as db:
            user = members.set_status(db, current_principal(), user_id, status)
        flash(f"{user.email} is {'disabled' if status == 'disabled' else 'enabled again'}.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.users")


@bp.route("/admin/tenants/")
@operator_required
def tenants():  # noqa: ANN201
    with reading() as db:
        rows = members.list_tenants(db, current_principal())
    return render_template("tenants/index.html", rows=rows)
