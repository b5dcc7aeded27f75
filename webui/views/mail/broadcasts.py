"""Broadcasts per inbox (issue 16 point 2): a form that sends one message to each contact of a
label (the same service as POST /v1/messages/broadcast/), and the latest broadcasts' status."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity.auth import inbox_for
from appliance.services.mail import broadcast, labels
from webui import bp, current_principal, manager_required
from webui.store import attempt, reading, settings


@bp.route("/admin/inboxes/<inbox_id>/broadcasts/")
@manager_required
def broadcasts_page(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        choices = [lb for lb in labels.list_labels(db, inbox, limit=200)[0] if lb.type != "message"]
        rows = [broadcast.status_of(db, b, announce=False) | {"created_at": b.created_at,
                                              "subject": (b.request or {}).get("subject") or ""}
                for b in broadcast.list_broadcasts(db, inbox)]
    return render_template("contacts/broadcasts.html", inbox=inbox, labels=choices, rows=rows)


@bp.route("/admin/inboxes/<inbox_id>/broadcasts/", methods=["POST"])
@manager_required
def broadcast_start(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        inbox_for(db, current_principal(), inbox_id)  # another tenant's inbox: 404 before anything
    form = request.form
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        row = broadcast.start(work.db, settings(), current_principal(), inbox, broadcast.BroadcastInput(
            label_id=form.get("label_id", "")[:40], subject=form.get("subject", "").strip()[:998] or None,
            text_body=form.get("text_body", "")[:1_000_000] or None))
        sent, skipped = row.recipients, row.skipped
    if work.ok:
        flash(f"Broadcast queued: {sent} messages, {skipped} addresses skipped.", "success")
    return redirect(url_for("webui.broadcasts_page", inbox_id=inbox_id), code=303)
