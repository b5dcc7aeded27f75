"""The audit log in the browser (issue 23): owners and admins see their tenant's chain, operators
the box's and every tenant's; filters as GET /v1/audit/ has them, a CSV export of the same
selection, and the chain's verification at the top."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

from flask import Response, render_template, request

from appliance.errors import ValidationError
from appliance.models import MANAGER_ROLES
from appliance.services.governance import audit
from webui import bp, current_principal, manager_required, nav_item
from webui.store import reading, settings

nav_item("Audit log", "webui.audit_page", order=75, audience="tenant", roles=MANAGER_ROLES)
PAGE = 100
CSV_LIMIT = 10000  # rows in one export; narrow the dates for more
CSV_COLUMNS = ("at", "seq", "tenant_id", "actor_kind", "actor_id", "actor_label", "ip", "edge", "action",
               "resource_type", "resource_id", "request_id", "changes", "hash")


def _day(name: str) -> dt.datetime | None:
    """A date (the page's date inputs) or an ISO 8601 time; naive means UTC; bad input → 400."""
    value = request.args.get(name) or None
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name}: send a date like 2026-12-01", field=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _filters() -> dict:
    cursor = request.args.get("cursor") or None
    if cursor is not None and not re.fullmatch(r"aud_[0-9A-Z]{26}", cursor):
        raise ValidationError("cursor: send back the link's cursor as it was", field="cursor")
    return {"frm": _day("from"), "to": _day("to"),
            "actor": request.args.get("actor") or None, "action": request.args.get("action") or None,
            "resource_type": request.args.get("resource_type") or None}


@bp.route("/admin/audit/")
@manager_required
def audit_page():  # noqa: ANN201
    principal = current_principal()
    filters = _filters()
    if request.args.get("format") == "csv":
        return _csv(principal, filters)
    cursor = request.args.get("cursor") or None  # checked by _filters
    with reading() as db:
        rows, older = audit.list_entries(db, principal, cursor=cursor, limit=PAGE, **filters)
        verdict = audit.verify_for(db, settings().secret_key, principal)
    return render_template("audit/index.html", rows=rows, older=older, cursor=cursor, verdict=verdict,
                           args={k: request.args.get(k, "") for k in ("from", "to", "actor", "action",
                                                                      "resource_type")})


def _csv(principal, filters: dict) -> Response:  # noqa: ANN001
    with reading() as db:
        rows, _ = audit.list_entries(db, principal, limit=CSV_LIMIT, **filters)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_cell(v) for v in (
            r["at"], r["seq"], r["tenant_id"], r["actor"]["kind"], r["actor"]["id"], r["actor"]["label"], r["ip"],
            r["edge"], r["action"], r["resource"]["type"], r["resource"]["id"], r["request_id"],
            r["changes"], r["hash"])])
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="gentbox-audit.csv"'})


def _cell(value) -> str:  # noqa: ANN001
    """A CSV cell a spreadsheet will not run: values starting with = + - @ are quoted with '."""
    text = "" if value is None else (value if isinstance(value, str) else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
