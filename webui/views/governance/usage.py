"""Usage and caps (issue 22): the period's figures per inbox, charts of the stats series (inline
SVG drawn here, webui/charts.py), every cap with its current use, and an editor per level; the
operators' per-tenant usage table; a banner on every page while a cap is past its first
threshold. The same service functions as /v1/billing/ and /v1/stats/."""
from __future__ import annotations

import datetime as dt
import re

from flask import flash, render_template, request
from sqlalchemy import select

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.models import MANAGER_ROLES, Tenant
from appliance.services.governance import caps, usage
from appliance.services.identity import inboxes as inbox_service
from appliance.services.identity import tokens as token_service
from webui import bp, current_principal, manager_required, nav_item, operator_required
from webui.charts import bar_chart
from webui.pages import back
from webui.store import attempt, reading, settings

nav_item("Usage", "webui.usage_page", order=47, roles=MANAGER_ROLES)
nav_item("Usage by tenant", "webui.usage_tenants", order=27, audience="operator")
SERIES_LABELS = {"sends": "Sends (per recipient)", "receives": "Messages received", "bounces": "Bounces",
                 "approvals": "Approvals"}


@bp.app_context_processor
def _banner_context() -> dict:
    return {"cap_banners": _cap_banners}


def _cap_banners() -> list[str]:
    """The banner lines for the signed-in owner or admin (none for others, none on failure)."""
    principal = current_principal()
    if principal is None or principal.kind != "user" or not principal.is_manager:
        return []
    with reading() as db:
        return caps.banners(db, settings(), principal.tenant_id)


@bp.route("/admin/usage/")
@manager_required
def usage_page():  # noqa: ANN201
    principal = current_principal()
    interval = "day" if request.args.get("interval") == "day" else "hour"
    end = utcnow()
    start = end - (dt.timedelta(days=30) if interval == "day" else dt.timedelta(hours=48))
    with reading() as db:
        report = usage.usage_report(db, settings(), principal.tenant_id, None)
        series = usage.stats(db, principal.tenant_id, start=start, end=end, interval=interval)
        cap_list = caps.list_caps(db, settings(), principal)
        live = sorted(inbox_service.list_inboxes(db, principal, after=None, limit=1000), key=lambda i: i.address)
        inboxes = [(i.id, i.address) for i in live]
        address_of = dict(inboxes)
        tokens = sorted(((t.id, t.label, address_of.get(t.inbox_id, "")) for t in
                         token_service.list_tokens(db, principal, None, after=None, limit=1000)),
                        key=lambda t: (t[2], t[1]))
    charts = [bar_chart(label, series["times"], series["series"][name]) for name, label in SERIES_LABELS.items()]
    return render_template("usage/index.html", report=report, charts=charts, caps=cap_list, inboxes=inboxes,
                           tokens=tokens, interval=interval, addresses=dict(inboxes))


def _limit(name: str) -> int | None:
    value = (request.form.get(name) or "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", value):  # not isdigit(): "²" is a digit int() refuses
        raise ValidationError(f"{name.replace('_', ' ')} must be a whole number (or empty for none)", field=name)
    return int(value)


def _number(name: str) -> float | None:
    value = (request.form.get(name) or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"{name.replace('_', ' ')} must be a number (or empty for no cap)", field=name) from None
    if number < 0:
        raise ValidationError(f"{name.replace('_', ' ')} must not be negative", field=name)
    return number


def _thresholds() -> list[int] | None:
    value = (request.form.get("alert_thresholds") or "").strip()
    if not value:
        return None
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise ValidationError("alert thresholds are percentages separated by commas, e.g. 80, 95",
                              field="alert_thresholds") from None


def _mode() -> str:
    return "allow_and_bill" if request.form.get("mode") == "allow_and_bill" else "enforce"


@bp.route("/admin/usage/caps/sends/", methods=["POST"])
@manager_required
def usage_send_cap():  # noqa: ANN201
    level = request.form.get("level", "")
    subject = request.form.get(f"{level}_id") or None
    with attempt() as work:
        if level not in caps.LEVELS:
            raise ValidationError("Choose the tenant, an inbox or a token.", field="level")
        cap = caps.set_send_cap(work.db, current_principal(), level=level, subject_id=subject,
                                per_hour=_limit("per_hour"), per_day=_limit("per_day"),
                                per_month=_limit("per_month"), alert_thresholds=_thresholds())
    if work.ok:
        flash("Send cap saved." if cap else "Send cap removed.", "success")
    return back("webui.usage_page")


@bp.route("/admin/usage/caps/storage/", methods=["POST"])
@manager_required
def usage_storage_cap():  # noqa: ANN201
    kind = "files" if request.form.get("kind") == "files" else "mailbox"
    with attempt() as work:
        cap = caps.set_storage_cap(work.db, current_principal(), kind=kind,
                                   inbox_id=request.form.get("inbox_id") or None, limit_gb=_number("limit_gb"),
                                   mode=_mode(), alert_thresholds=_thresholds())
    if work.ok:
        flash(f"{kind.title()} cap saved." if cap else f"{kind.title()} cap removed.", "success")
    return back("webui.usage_page")


@bp.route("/admin/usage/caps/spend/", methods=["POST"])
@manager_required
def usage_spend_cap():  # noqa: ANN201
    with attempt() as work:
        cap = caps.set_spend_cap(work.db, settings(), current_principal(), monthly_limit=_number("monthly_limit"),
                                 mode=_mode(), alert_thresholds=_thresholds())
    if work.ok:
        flash("Spend cap saved." if cap else "Spend cap removed.", "success")
    return back("webui.usage_page")


@bp.route("/admin/usage/tenants/")
@operator_required
def usage_tenants():  # noqa: ANN201
    period = request.args.get("period") or None
    with reading() as db:
        try:
            rows = usage.tenant_table(db, settings(), period)
        except ValidationError:
            rows, period = usage.tenant_table(db, settings(), None), None
        names = dict(db.execute(select(Tenant.id, Tenant.name)).all())
    s = settings()
    defaults = {"sends per hour": s.default_tenant_sends_per_hour, "sends per day": s.default_tenant_sends_per_day,
                "sends per month": s.default_tenant_sends_per_month,
                "mailbox bytes": s.default_tenant_mailbox_bytes}
    return render_template("usage/tenants.html", rows=rows, names=names, defaults=defaults,
                           period=usage.month_bounds(period)[0])
