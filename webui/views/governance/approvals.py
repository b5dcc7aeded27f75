"""Approvals (issue 8.5): the agent actions held for a person's decision, pending ones first, with
the full held message (its sanitised HTML in the same sandboxed frame as the mail pages), approve
and reject (confirmed), and the pending count as a badge in the navigation. The same service
functions as /v1/approvals/."""
from __future__ import annotations

from flask import flash, render_template, request, url_for

from appliance.errors import GentError
from appliance.models import Inbox
from appliance.services.governance import approvals
from appliance.services.mail import messages
from webui import bp, current_principal, flash_error, manager_required, nav_item
from webui.pages import back, confirmation
from webui.store import reading, settings, writing
from webui.views.mail.mail import framing_page, sandboxed_html

PAGE_SIZE = 50


def _pending_badge(db, principal) -> int:  # noqa: ANN001
    return approvals.pending_count(db, principal)


nav_item("Approvals", "webui.approvals_list", order=45, roles=("owner", "admin"), badge=_pending_badge)


def _addresses(db, rows) -> dict[str, str]:  # noqa: ANN001
    ids = {a.inbox_id for a in rows}
    return {i.id: i.address for i in (db.get(Inbox, inbox_id) for inbox_id in ids) if i is not None}


@bp.route("/admin/approvals/")
@manager_required
def approvals_list():  # noqa: ANN201
    principal = current_principal()
    status = request.args.get("status") or None
    cursor = request.args.get("cursor") or None
    with reading() as db:
        rows, after = approvals.list_approvals(db, principal, status=status, limit=PAGE_SIZE, cursor=cursor)
        items = [approvals.approval_to_dict(a) for a in rows]
        addresses = _addresses(db, rows)
        pending = approvals.pending_count(db, principal)
    return render_template("approvals/index.html", items=items, addresses=addresses, cursor=after,
                           status=status, statuses=("pending", "approved", "rejected", "expired"),
                           pending=pending, paged=bool(cursor))


@bp.route("/admin/approvals/<approval_id>/")
@manager_required
def approval_detail(approval_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        approval = approvals.get_approval(db, principal, approval_id)
        item = approvals.approval_to_dict(approval)
        message = approvals.held_message(db, principal, approval_id)
        inbox = db.get(Inbox, approval.inbox_id)
        zone = messages.zone_of(inbox)
        full = messages.render_full(db, [message], zone)[0] if message is not None else None
    framing_page()
    return render_template("approvals/detail.html", a=item, m=full, address=inbox.address,
                           body_url=url_for("webui.approval_body", approval_id=approval_id))


@bp.route("/admin/approvals/<approval_id>/body/")
@manager_required
def approval_body(approval_id: str):  # noqa: ANN201
    with reading() as db:
        message = approvals.held_message(db, current_principal(), approval_id)
        html = message.html_body if message is not None else ""
    return sandboxed_html(html)


def _decide(approval_id: str, verb: str):  # noqa: ANN202
    try:
        with writing() as db:
            decide = approvals.approve if verb == "approve" else approvals.reject
            approval = decide(db, settings(), current_principal(), approval_id)
            subject = (approval.summary or {}).get("subject") or "the held action"
        flash(f"Approved “{subject}”: it is queued for delivery." if verb == "approve"
              else f"Rejected “{subject}”: it will never be sent.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.approvals_list")


@bp.route("/admin/approvals/<approval_id>/approve/", methods=["POST"])
@manager_required
def approval_approve(approval_id: str):  # noqa: ANN201
    asked = confirmation("Approve this held message? It is signed and sent exactly as shown.", button="Approve",
                         cancel_url=url_for("webui.approval_detail", approval_id=approval_id))
    return asked if asked is not None else _decide(approval_id, "approve")


@bp.route("/admin/approvals/<approval_id>/reject/", methods=["POST"])
@manager_required
def approval_reject(approval_id: str):  # noqa: ANN201
    asked = confirmation("Reject this held message? It is never sent; the agent sees it was rejected.",
                         button="Reject", cancel_url=url_for("webui.approval_detail", approval_id=approval_id))
    return asked if asked is not None else _decide(approval_id, "reject")
