"""Compliance in the browser (issue 23): owners and admins request exports and download them,
schedule and cancel erasures, set the retention policy, and download the audit bundle. The same
service functions as /v1/compliance/."""
from __future__ import annotations

import datetime as dt

from flask import Response, flash, render_template, request

from appliance.errors import ValidationError
from appliance.models import MANAGER_ROLES
from appliance.services.governance import bundle, compliance, export, retention
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import back
from webui.store import attempt, reading, settings

nav_item("Compliance", "webui.compliance_page", order=76, audience="tenant", roles=MANAGER_ROLES)


@bp.route("/admin/compliance/")
@manager_required
def compliance_page():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        exports = export.list_exports(db, settings(), principal)
        deletions = [compliance.present_deletion(r) for r in compliance.list_deletions(db, principal)]
        policy = retention.get_policy(db, principal.tenant_id)
    return render_template("compliance/index.html", exports=exports, deletions=deletions, policy=policy,
                           is_owner=principal.user.role == "owner")


@bp.route("/admin/compliance/export/", methods=["POST"])
@manager_required
def compliance_export():  # noqa: ANN201
    with attempt() as work:
        export.request_export(work.db, current_principal(), "tenant" if request.form.get("scope") == "tenant" else "user")
    if work.ok:
        flash("Export requested: the worker builds it; its download link appears here when ready.", "success")
    return back("webui.compliance_page")


@bp.route("/admin/compliance/deletion/", methods=["POST"])
@manager_required
def compliance_deletion():  # noqa: ANN201
    with attempt() as work:
        row = compliance.request_deletion(work.db, settings(), current_principal(), request.form.get("scope", ""),
                                          request.form.get("address") or None)
    if work.ok:
        flash(f"Erasure scheduled for {row.effective_at:%Y-%m-%d %H:%M} UTC; cancel it before then if needed.",
              "success")
    return back("webui.compliance_page")


@bp.route("/admin/compliance/deletion/<deletion_id>/cancel/", methods=["POST"])
@manager_required
def compliance_cancel(deletion_id: str):  # noqa: ANN201
    with attempt() as work:
        compliance.cancel_deletion(work.db, current_principal(), deletion_id)
    if work.ok:
        flash("Erasure cancelled: nothing was erased.", "success")
    return back("webui.compliance_page")


def _days(name: str) -> int | None:
    value = (request.form.get(name) or "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit():
        raise ValidationError(f"{name}: a whole number of days, or empty to keep for ever", field=name)
    return int(value)


@bp.route("/admin/compliance/retention/", methods=["POST"])
@manager_required
def compliance_retention():  # noqa: ANN201
    with attempt() as work:
        retention.set_policy(work.db, current_principal(), {name: _days(name) for name in retention.FIELDS})
    if work.ok:
        flash("Retention policy saved; the worker applies it daily.", "success")
    return back("webui.compliance_page")


def _day(name: str) -> dt.datetime | None:
    value = request.args.get(name) or None
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ValidationError(f"{name}: send a date like 2026-12-01", field=name) from None


@bp.route("/admin/compliance/audit-bundle/")
@manager_required
def compliance_bundle():  # noqa: ANN201
    frm, to = _day("from"), _day("to")
    with reading() as db:
        data = bundle.audit_bundle(db, settings(), current_principal(), frm, to)
    return Response(data, mimetype="application/zip", headers={
        "Content-Disposition": 'attachment; filename="gentbox-audit-bundle.zip"', "Cache-Control": "no-store"})
