"""The dashboard, the first page after signing in: the owner's next step, domains that need
attention, the queue, recent events and, for appliance operators, the health of the box (the
cheap checks on every view; every `gentbox doctor` check behind a button)."""
from __future__ import annotations

from flask import current_app, render_template, url_for

from appliance import doctor
from appliance.models import MANAGER_ROLES
from appliance.services import overview
from appliance.services.automation import events
from appliance.services.identity import inboxes, users
from webui import bp, current_principal, login_required_page, nav_item, operator_required
from webui.store import reading, settings, store

nav_item("Dashboard", "webui.dashboard", order=10, audience="tenant")
nav_item("Health", "webui.health", order=27, audience="operator")
RECENT = 8


def _step_link(step: dict | None) -> str | None:
    """Where in the web UI the API's next step is done."""
    if step is None:
        return None
    code = step["code"]
    if code == "verify_domain":
        name = step["path"].split("/")[3]
        return url_for("webui.domain_page", name=name)
    pages = {"add_domain": "webui.domains_page", "create_inbox": "webui.inboxes_page",
             "create_token": "webui.tokens_page", "send_first_message": "webui.tokens_page",
             "read_inbox": "webui.mail"}
    endpoint = pages.get(code)
    return url_for(endpoint) if endpoint in current_app.view_functions else None


@bp.route("/admin/dashboard/")
@login_required_page
def dashboard():  # noqa: ANN201
    principal = current_principal()
    user = principal.user
    manager = user.role in MANAGER_ROLES
    context: dict = {"manager": manager, "operator": user.is_operator}
    with reading() as db:
        context["queue"] = overview.queue_figures(db, principal.tenant_id)
        if manager:
            step = users.next_step_for_user(db, principal.tenant_id)
            context.update(step=step, step_link=_step_link(step),
                           attention=overview.domains_needing_attention(db, settings(), principal),
                           failing_alerts=overview.failing_alerts(db, principal),
                           recent=[events.event_to_dict(e) for e in events.list_tenant_events(
                               db, principal.tenant_id, before=None, types=None, limit=RECENT)],
                           addresses={i.id: i.address for i in inboxes.list_inboxes(db, principal, after=None,
                                                                                   limit=1000)})
        if user.is_operator:
            context["box_queue"] = overview.queue_figures(db, None)
    if user.is_operator:
        checks = overview.quick_checks(store(), settings())
        context.update(checks=checks, overall=doctor.overall(checks))
    return render_template("dashboard/index.html", **context)


@bp.route("/admin/health/")
@operator_required
def health():  # noqa: ANN201
    """Every check of `gentbox doctor`, DNS and ports included (each probe has its time limit)."""
    checks = doctor.run_checks(store(), settings())
    return render_template("dashboard/health.html", checks=checks, overall=doctor.overall(checks))
