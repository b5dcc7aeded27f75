"""The waitlist, for appliance operators: pending/approved/rejected/redeemed, approve (one or many),
reject, re-send the sign-up link. The same service functions as `gentbox waitlist ...`."""
from __future__ import annotations

from collections import Counter

from flask import flash, render_template, request

from appliance.errors import GentError, ValidationError
from appliance.services.identity import waitlist
from webui import bp, current_principal, flash_error, nav_item, operator_required
from webui.pages import back, confirmation
from webui.store import reading, settings, writing


def _pending_badge(db, principal) -> int:  # noqa: ANN001
    return len(waitlist.list_entries(db, "pending"))


nav_item("Waitlist", "webui.waitlist_admin", order=20, audience="operator", badge=_pending_badge)


@bp.route("/admin/waitlist/")
@operator_required
def waitlist_admin():  # noqa: ANN201
    status = request.args.get("status", "pending")
    if status not in waitlist.STATUSES:
        raise ValidationError(f"status must be one of {', '.join(waitlist.STATUSES)}", field="status")
    with reading() as db:
        everyone = waitlist.list_entries(db)
    counts = Counter(entry.status for entry in everyone)
    entries = [entry for entry in everyone if entry.status == status]
    return render_template("waitlist/index.html", status=status, statuses=waitlist.STATUSES,
                           counts=counts, entries=entries)


def _approve(emails: list[str], verb: str) -> None:
    """Approve each address in its own unit of work: one bad address does not block the rest."""
    decided_by = current_principal().user.email
    done = []
    for email in emails:
        try:
            with writing() as db:
                waitlist.approve(db, settings(), email, decided_by=decided_by)
            done.append(email)
        except GentError as exc:
            flash_error(exc)
    if done:
        flash(f"{verb} {', '.join(done)}: the sign-up link is queued for sending.", "success")


@bp.route("/admin/waitlist/approve/", methods=["POST"])
@operator_required
def waitlist_approve():  # noqa: ANN201
    emails = [e for e in request.form.getlist("email") if e.strip()]
    if not emails:
        flash("Select at least one request to approve.", "error")
    else:
        _approve(emails, "Approved")
    return back("webui.waitlist_admin", status=request.form.get("status", "pending"))


@bp.route("/admin/waitlist/resend/", methods=["POST"])
@operator_required
def waitlist_resend():  # noqa: ANN201
    emails = [e for e in request.form.getlist("email") if e.strip()][:1]
    if emails:
        _approve(emails, "Sent a new link to")  # a fresh link replaces (invalidates) the earlier one
    return back("webui.waitlist_admin", status="approved")


@bp.route("/admin/waitlist/reject/", methods=["POST"])
@operator_required
def waitlist_reject():  # noqa: ANN201
    email = request.form.get("email", "")
    asked = confirmation(f"Reject the request of {email}? Any sign-up link already sent stops working.",
                         button="Reject")
    if asked is not None:
        return asked
    try:
        with writing() as db:
            waitlist.reject(db, email, decided_by=current_principal().user.email)
        flash(f"Rejected {email}.", "success")
    except GentError as exc:
        flash_error(exc)
    return back("webui.waitlist_admin", status=request.form.get("status", "pending"))
