"""The tenant's reply templates in the web UI (issue 16): list with their variables, create, edit
with a preview rendered from sample values, delete with confirmation. Owners and admins only; the
same service functions as /v1/templates/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.errors import GentError
from appliance.models import MANAGER_ROLES
from appliance.services.team import templates
from webui import bp, current_principal, manager_required, nav_item
from webui.errors import flash_error
from webui.pages import confirmation
from webui.store import attempt, reading

nav_item("Templates", "webui.templates_page", order=41, audience="tenant", roles=MANAGER_ROLES)
PAGE = 500


def _form() -> templates.TemplateInput:
    form = request.form
    return templates.TemplateInput(name=form.get("name", ""), subject=form.get("subject", ""),
                                   text_body=form.get("text_body", "").replace("\r\n", "\n"),
                                   html_body=form.get("html_body", "").replace("\r\n", "\n"))


@bp.route("/admin/templates/")
@manager_required
def templates_page():  # noqa: ANN201
    with reading() as db:
        rows, _ = templates.list_templates(db, current_principal(), limit=PAGE)
        shown = [templates.template_to_dict(t) for t in rows]
    return render_template("team/templates.html", rows=shown)


@bp.route("/admin/templates/", methods=["POST"])
@manager_required
def template_create():  # noqa: ANN201
    with attempt() as work:
        name = templates.create_template(work.db, current_principal(), _form()).name
    if work.ok:
        flash(f"Created the template “{name}”.", "success")
    return redirect(url_for("webui.templates_page"), code=303)


@bp.route("/admin/templates/<template_id>/")
@manager_required
def template_page(template_id: str):  # noqa: ANN201
    with reading() as db:
        shown = templates.template_to_dict(templates.get_template(db, current_principal(), template_id))
    values = {name: request.args.get(f"v_{name}", "") for name in shown["variables"]}
    preview = None
    if any(values.values()):
        try:
            with reading() as db:
                preview = templates.render(templates.get_template(db, current_principal(), template_id), values)
        except GentError as exc:
            flash_error(exc)
    return render_template("team/template.html", t=shown, values=values, preview=preview)


@bp.route("/admin/templates/<template_id>/", methods=["POST"])
@manager_required
def template_update(template_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's template is a 404 page
        templates.get_template(db, current_principal(), template_id)
    with attempt() as work:
        templates.update_template(work.db, current_principal(), template_id, _form())
    if work.ok:
        flash("Saved the template.", "success")
    return redirect(url_for("webui.template_page", template_id=template_id), code=303)


@bp.route("/admin/templates/<template_id>/delete/", methods=["POST"])
@manager_required
def template_delete(template_id: str):  # noqa: ANN201
    with reading() as db:
        name = templates.get_template(db, current_principal(), template_id).name
    asked = confirmation(f"Delete the template “{name}”? Agents using its id can no longer send with it.",
                         button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        templates.delete_template(work.db, current_principal(), template_id)
    if work.ok:
        flash(f"Deleted the template “{name}”.", "success")
    return redirect(url_for("webui.templates_page"), code=303)
