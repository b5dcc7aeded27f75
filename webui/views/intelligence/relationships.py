"""A contact's activity timeline and the inbox's relationship view (issue 21 point 7): read-only
pages over the projections the worker keeps (appliance/services/intelligence/), the same
service functions as GET /v1/activity/ and GET /v1/relationships/."""
from __future__ import annotations

from flask import render_template, request

from appliance.errors import ValidationError
from appliance.models import MANAGER_ROLES
from appliance.services.identity.auth import inbox_for
from appliance.services.intelligence import activity, relationships
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import inbox_home
from webui.store import reading

nav_item("Relationships", "webui.relationships_home", order=42, audience="tenant", roles=MANAGER_ROLES)


@bp.route("/admin/relationships/")
@manager_required
def relationships_home():  # noqa: ANN201
    """The inboxes, each with its relationship view (the only one's shown at once)."""
    return inbox_home("webui.relationships_page", "relationships/home.html")


@bp.route("/admin/inboxes/<inbox_id>/relationships/")
@manager_required
def relationships_page(inbox_id: str):  # noqa: ANN201
    limit = request.args.get("limit", "50")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 500):
        raise ValidationError("limit must be 1 to 500", field="limit")
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        graph = relationships.list_relationships(db, current_principal(), inbox.id, limit=int(limit))
    return render_template("relationships/index.html", inbox=inbox, graph=graph, person=None, limit=int(limit))


@bp.route("/admin/inboxes/<inbox_id>/relationships/<address>/")
@manager_required
def relationship_page(inbox_id: str, address: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        graph = relationships.person_graph(db, current_principal(), inbox.id, address)
    return render_template("relationships/index.html", inbox=inbox, graph=graph, person=graph["nodes"][0],
                           limit=None)


@bp.route("/admin/inboxes/<inbox_id>/contacts/<contact_id>/timeline/")
@manager_required
def contact_timeline(inbox_id: str, contact_id: str):  # noqa: ANN201
    with reading() as db:
        inbox, contact, items = activity.contact_timeline(db, current_principal(), inbox_id, contact_id)
    return render_template("relationships/timeline.html", inbox=inbox, c=contact, items=items)
